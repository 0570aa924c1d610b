"""deploy/: every shell script passes shellcheck, the example configs are valid fer-edge configs, the
systemd unit has its sandbox and verifies; and `--config FILE.toml` itself (keys, overrides, errors).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fer_edge.runtime.cli import main, run_parser
from fer_edge.runtime.config import ConfigError, with_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
TFLITE = ROOT / "tests" / "assets" / "tiny_fer.tflite"


def shell_scripts() -> list[Path]:
    """*.sh files and any file in deploy/ whose first line is a sh/bash shebang."""
    out = []
    for p in sorted(DEPLOY.rglob("*")):
        if p.is_file() and (p.suffix == ".sh" or p.read_bytes()[:64].split(b"\n")[0].startswith(b"#!")
                            and re.search(rb"\b(ba)?sh\b", p.read_bytes()[:64].split(b"\n")[0])):
            out.append(p)
    return out


def test_deploy_has_scripts():
    assert DEPLOY / "raspberry-pi" / "install.sh" in shell_scripts()


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_shellcheck(script):
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (Debian: apt install shellcheck; .ci/run installs it)")
    r = subprocess.run([exe, "--severity=style", "--external-sources", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("config", [DEPLOY / "config.example.toml", DEPLOY / "jetson" / "config.toml"],
                         ids=lambda p: str(p.relative_to(DEPLOY)))
def test_example_configs_are_valid(config):
    p = run_parser()
    a = p.parse_args(with_config(p, ["--config", str(config)]))
    assert a.camera == 0 and a.window == "off"


def test_systemd_unit_is_sandboxed():
    text = (DEPLOY / "systemd" / "fer-edge.service").read_text()
    for line in ("Restart=on-failure", "User=fer-edge", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "DevicePolicy=closed", "DeviceAllow=char-video4linux rw",
                 "ExecStart=/opt/fer-edge/venv/bin/fer-edge --config /etc/fer-edge/config.toml"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    active_allows = re.findall(r"^DeviceAllow=(.*)$", text, re.M)
    assert active_allows == ["char-video4linux rw"]  # the video devices only
    exe = shutil.which("systemd-analyze")
    if exe:
        r = subprocess.run([exe, "verify", str(DEPLOY / "systemd" / "fer-edge.service")], capture_output=True, text=True)
        problems = [l for l in (r.stdout + r.stderr).splitlines() if l.strip() and "is not executable" not in l
                    and "No such file" not in l]  # the venv exists only on the device
        assert not problems, problems


# -- --config -------------------------------------------------------------------------------------

def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_config_keys_types_and_command_line_overrides(tmp_path):
    cfg = _write(tmp_path, 'source = "a.mp4"\ndetect_every = 3\nsmooth = 0.5\nequalize = false\nforce = true\n'
                           'quiet = false\nmqtt-qos = 0\n')
    p = run_parser()
    a = p.parse_args(with_config(p, ["--config", str(cfg)]))
    assert (a.source, a.detect_every, a.smooth, a.equalize, a.force, a.quiet, a.mqtt_qos) == \
        ("a.mp4", 3, 0.5, False, True, False, 0)
    a = p.parse_args(with_config(p, [f"--config={cfg}", "--detect-every", "5", "--camera", "1", "--equalize"]))
    assert (a.detect_every, a.camera, a.source, a.equalize) == (5, 1, None, True)  # flags win, even across a group
    a = p.parse_args(with_config(p, ["--detect-e", "7", "--cam", "2", "--config", str(cfg)]))  # abbreviations too
    assert (a.detect_every, a.camera, a.source) == (7, 2, None)


@pytest.mark.parametrize("text, words", [
    ("detect_everyy = 3\n", "unknown key 'detect_everyy'; valid keys: align, camera, "),
    ("force = 1\n", "takes true or false"),
    ("detector = true\n", "takes a value"),
    ("source = ['a', 'b']\n", "takes one value"),
    ("[mqtt]\nhost = 'x'\n", "found a table"),
    ("camera = \n", "not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path, text, words, capsys):
    cfg = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(words)):
        with_config(run_parser(), ["--config", str(cfg)])
    assert main(["--config", str(cfg)]) == 2
    assert "ConfigError: " in capsys.readouterr().err


def test_config_missing_file_and_bad_value(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    cfg = _write(tmp_path, 'image = "x.jpg"\ndetector = "nope"\n')
    assert main(["--config", str(cfg)]) == 2  # checked like argparse would, but naming the file and the key
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ConfigError: {cfg}: key 'detector' takes one of ") and err.endswith("found 'nope'")
    assert "\n" not in err


def test_a_run_from_a_config_file(tmp_path, capsys):
    import cv2
    import numpy as np

    img = tmp_path / "grey.png"
    cv2.imwrite(str(img), np.full((60, 80, 3), 127, np.uint8))
    cfg = _write(tmp_path, f'image = "{img}"\nmodel = "{TFLITE}"\nthreads = 1\nsummary = "{tmp_path / "s.json"}"\n')
    assert main(["--config", str(cfg)]) == 0
    assert "no face" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 1
