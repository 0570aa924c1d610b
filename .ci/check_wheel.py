"""CI: the sdist and the wheel carry what a user's install needs, and their sizes.

    python3 .ci/check_wheel.py dist/fer_edge-X-py3-none-any.whl dist/fer_edge-X.tar.gz

Checks: every file of models/ (shipped models, golden outputs, cards, third-party licence texts) is in
both; the Python API (fer_edge/__init__.py, compat.py, py.typed) is in the wheel; every models/NAME_golden.npz has NAME_int8.tflite beside it; the project's LICENSE is in the
wheel's metadata. Prints the sizes and the licence files found. Standard library only.
"""
from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mib(n: int) -> str:
    return f"{n} bytes ({n / 2**20:.1f} MiB)"


def main(wheel: str, sdist: str) -> int:
    shipped = sorted(p.name for p in (ROOT / "models").iterdir() if p.is_file())
    with zipfile.ZipFile(wheel) as z:
        in_wheel = {n.removeprefix("fer_edge/models/") for n in z.namelist() if n.startswith("fer_edge/models/")}
        api = [n for n in ("fer_edge/__init__.py", "fer_edge/compat.py", "fer_edge/py.typed") if n not in z.namelist()]
        licences = [n for n in z.namelist() if "/licenses/" in n or Path(n).name.upper().startswith("LICENSE")]
    with tarfile.open(sdist) as t:
        in_sdist = {Path(n).name for n in t.getnames() if Path(n).parent.name == "models"}
        sdist_licence = any(Path(n).name == "LICENSE" and n.count("/") == 1 for n in t.getnames())
    problems = [f"wheel lacks models/{n}" for n in shipped if n not in in_wheel]
    problems += [f"sdist lacks models/{n}" for n in shipped if n not in in_sdist]
    problems += [f"wheel lacks {n} (the Python API: from fer_edge import Recognizer)" for n in api]
    goldens = [n for n in shipped if n.endswith("_golden.npz")]
    if not goldens:
        problems.append("models/ holds no NAME_golden.npz")
    problems += [f"models/{g} has no {g.removesuffix('_golden.npz')}_int8.tflite beside it" for g in goldens
                 if g.removesuffix("_golden.npz") + "_int8.tflite" not in shipped]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in licences):
        problems.append("wheel lacks the project's LICENSE in its .dist-info/licenses/")
    if not sdist_licence:
        problems.append("sdist lacks LICENSE at its root")
    print(f"wheel {Path(wheel).name}: {_mib(Path(wheel).stat().st_size)}; sdist {Path(sdist).name}: "
          f"{_mib(Path(sdist).stat().st_size)}")
    print(f"models in the wheel: {len(in_wheel)} files ({', '.join(goldens)} gated); licence files: "
          f"{', '.join(licences)}")
    for p in problems:
        print(f"CI: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python3 .ci/check_wheel.py WHEEL SDIST")
    sys.exit(main(*sys.argv[1:]))
