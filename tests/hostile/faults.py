"""Helpers of the hostile run kept as tests: fault files are generated here (nothing binary is committed),
and the checks every case makes: the exit code, one stderr line naming the problem, no traceback, and the
files left behind."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

CLI = [sys.executable, "-m", "fer_edge.runtime.cli"]
# Under qemu-user (CI's emulated aarch64 leg sets FER_EDGE_EMULATED=1) the cpuinfo library inside LiteRT finds
# no /sys and writes these lines to stderr from C, in every process that creates an interpreter; a real board
# has /sys. Only there are they left out of the one-line check.
EMULATOR_NOISE = "Error in cpuinfo: "


def png_bomb(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A valid grey PNG of width x height zero pixels, compressed to under 1 MB (30000^2: 875 KB on disk,
    900 MB of pixels once decoded), written without ever holding the pixels in memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def bomb(tmp_path_factory) -> Path:
    """The decompression bomb of the hostile run: 875 KB of PNG declaring 30000 x 30000 pixels. (A fixture
    here, imported by the tests: a second conftest.py would shadow tests/conftest.py as a module.)"""
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


def grey_image(path: Path, width: int = 64, height: int = 48) -> Path:
    assert cv2.imwrite(str(path), np.full((height, width), 120, np.uint8))
    return path


def write_video(path: Path, frames: int = 30, size: tuple[int, int] = (96, 64)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for i in range(frames):
        w.write(np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8))
    w.release()
    return path


def one_line(err: str, *words: str) -> str:
    """The stderr of a refused command: exactly one line, naming the problem, and no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()
             and not (os.environ.get("FER_EDGE_EMULATED") == "1" and line.startswith(EMULATOR_NOISE))]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"expected one line on stderr, found {len(lines)}:\n{err}"
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


def error_line(err: str, *words: str) -> str:
    """For commands that log progress (fer-convert): the error is the last line, the only one naming an error."""
    lines = [line for line in err.strip().splitlines() if line.strip()
             and not (os.environ.get("FER_EDGE_EMULATED") == "1" and line.startswith(EMULATOR_NOISE))]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.split(":", 1)[0].endswith("Error")]
    assert errors == lines[-1:], f"expected one error line, last:\n{err}"
    for w in words:
        assert w in lines[-1], f"{w!r} not in {lines[-1]!r}"
    return lines[-1]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a writer left in a folder (hidden '.NAME.tmpPID' names)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name)


def start(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kwargs.pop("env", {})}
    options = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **kwargs}
    return subprocess.Popen(CLI + args, text=True, env=env, **options)


def wait_for_stderr_file(path: Path, words: str, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists() and words in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{words!r} did not appear in {path} within {timeout} s:\n"
                         f"{path.read_text(errors='replace') if path.exists() else '(no file)'}")


def terminate(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
    """Send `sig`; (exit code, seconds until the process ended)."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {timeout} s after {signal.Signals(sig).name}") from None
    return rc, time.monotonic() - t0
