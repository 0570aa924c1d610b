"""CI: the sdist and the wheel carry what a user's install needs, and their sizes.

    python3 .ci/check_wheel.py dist/fer_edge-X-py3-none-any.whl dist/fer_edge-X.tar.gz

The wheel is what a device installs: every file of models/ except the shipped models' Keras references
(NAME.keras) and fp32 files (NAME_fp32.tflite), which a device never loads: INT8 files, golden outputs
(for `fer-edge verify` and `fer-convert verify --reference NAME_golden.npz`), YuNet and the licence texts,
the cards; at most WHEEL_MAX_BYTES. The sdist holds every file of models/. Every models/NAME_golden.npz
has NAME_int8.tflite and NAME_int8.onnx beside it in the wheel; the Python API (fer_edge/__init__.py,
compat.py, py.typed) and the preview's page (runtime/serve/preview.html) are in the wheel; the project's LICENSE is in the wheel's metadata and at the sdist's root. Prints the sizes and the licence files found. Standard library only.
"""
from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL_MAX_BYTES = 6_000_000  # issue 31: a Raspberry Pi downloads what it runs (it was 22.7 MiB with the references)
NOT_IN_WHEEL = re.compile(r".+(\.keras|_fp32\.tflite|_fp32\.onnx)")  # kept in the repository and the sdist


def _mib(n: int) -> str:
    return f"{n} bytes ({n / 2**20:.1f} MiB)"


def wheel_problems(shipped: list[str], in_wheel: set[str], size: int) -> list[str]:
    device = [n for n in shipped if not NOT_IN_WHEEL.fullmatch(n)]
    problems = [f"wheel lacks models/{n}" for n in device if n not in in_wheel]
    problems += [f"wheel carries models/{n}, which a device never loads (it stays in the repository and the sdist)"
                 for n in sorted(in_wheel) if NOT_IN_WHEEL.fullmatch(n)]
    goldens = [n for n in shipped if n.endswith("_golden.npz")]
    if not goldens:
        problems.append("models/ holds no NAME_golden.npz")
    problems += [f"models/{g} has no {g.removesuffix('_golden.npz')}{end} beside it in the wheel" for g in goldens
                 for end in ("_int8.tflite", "_int8.onnx") if g.removesuffix("_golden.npz") + end not in in_wheel]
    if not any(n.startswith("face_detection_yunet") for n in in_wheel) or "LICENSE-yunet.txt" not in in_wheel:
        problems.append("wheel lacks the YuNet detector or its licence (models/face_detection_yunet*, LICENSE-yunet.txt)")
    if size > WHEEL_MAX_BYTES:
        problems.append(f"wheel is {_mib(size)}, over the {WHEEL_MAX_BYTES} bytes a device download may take")
    return problems


def main(wheel: str, sdist: str) -> int:
    shipped = sorted(p.name for p in (ROOT / "models").iterdir() if p.is_file())
    with zipfile.ZipFile(wheel) as z:
        in_wheel = {n.removeprefix("fer_edge/models/") for n in z.namelist() if n.startswith("fer_edge/models/")}
        api = [n for n in ("fer_edge/__init__.py", "fer_edge/compat.py", "fer_edge/py.typed") if n not in z.namelist()]
        page = [n for n in ("fer_edge/runtime/serve/preview.html",) if n not in z.namelist()]
        licences = [n for n in z.namelist() if "/licenses/" in n or Path(n).name.upper().startswith("LICENSE")]
    with tarfile.open(sdist) as t:
        in_sdist = {Path(n).name for n in t.getnames() if Path(n).parent.name == "models"}
        sdist_licence = any(Path(n).name == "LICENSE" and n.count("/") == 1 for n in t.getnames())
    size = Path(wheel).stat().st_size
    problems = wheel_problems(shipped, in_wheel, size)
    problems += [f"sdist lacks models/{n}" for n in shipped if n not in in_sdist]
    problems += [f"wheel lacks {n} (the Python API: from fer_edge import Recognizer)" for n in api]
    problems += [f"wheel lacks {n} (the page of fer-edge --serve)" for n in page]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in licences):
        problems.append("wheel lacks the project's LICENSE in its .dist-info/licenses/")
    if not sdist_licence:
        problems.append("sdist lacks LICENSE at its root")
    print(f"wheel {Path(wheel).name}: {_mib(size)} (limit {WHEEL_MAX_BYTES} bytes); sdist {Path(sdist).name}: "
          f"{_mib(Path(sdist).stat().st_size)}")
    print(f"models in the wheel: {len(in_wheel)} files, in the sdist: {len(in_sdist)}; gated: "
          f"{', '.join(n for n in shipped if n.endswith('_golden.npz'))}; licence files: {', '.join(licences)}")
    for p in problems:
        print(f"CI: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python3 .ci/check_wheel.py WHEEL SDIST")
    sys.exit(main(*sys.argv[1:]))
