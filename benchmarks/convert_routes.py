"""Conversion wall time and INT8 accuracy of fer-convert's routes on the same network (issue 37).

fer-vgg: the Keras route (models/fer-vgg.keras) against the ONNX route (the same network exported to ONNX by
fer-convert's own tf2onnx step, then converted as an .onnx file); with --torch-model (the tutorial network's
state_dict, benchmarks/torch_tutorial_train.py), its .onnx, .pt2 and .pth + --torch-class routes too.
Every run is `fer-convert --int8` in a subprocess, timed from start to exit; results go to --json / --markdown.

    python benchmarks/convert_routes.py --data DATA --json benchmarks/convert_routes.json --markdown benchmarks/convert_routes.md
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FLAGS = ["--labels", "fer2013", "--normalize", "0,1", "--equalize"]


def convert(model: str, out: Path, extra: list[str], data: str, formats: str = "--int8") -> dict:
    cmd = [str(BIN / "fer-convert"), *formats.split(), model, *extra, "--data", data, "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = round(time.perf_counter() - t0, 1)
    row = {"command": " ".join(cmd[1:]), "exit": proc.returncode, "seconds": seconds}
    report = out / "report.json"
    if report.is_file():
        doc = json.loads(report.read_text())
        row["reference_accuracy"] = doc["reference"]["accuracy"]
        row["formats"] = {k: {m: v.get(m) for m in ("accuracy", "accuracy_drop", "agreement", "error")}
                          for k, v in doc["formats"].items()}
    else:
        row["stderr"] = proc.stderr.strip().splitlines()[-1:] if proc.stderr else []
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def fer_vgg(data: str, work: Path) -> dict:
    keras = convert(str(ROOT / "models/fer-vgg.keras"), work / "keras", [], data)
    exported = convert(str(ROOT / "models/fer-vgg.keras"), work / "onnx-src", [], data, "--formats onnx-fp32")
    onnx = convert(str(work / "onnx-src/fer-vgg_fp32.onnx"), work / "onnx", [], data)
    diff = {f: round(100 * (onnx["formats"][f]["accuracy"] - keras["formats"][f]["accuracy"]), 2)
            for f in ("tflite-int8", "onnx-int8") if "formats" in onnx and "formats" in keras}
    return {"keras": keras, "export_to_onnx": exported, "onnx": onnx, "int8_accuracy_onnx_minus_keras_pp": diff}


def tutorial(data: str, work: Path, state_dict: str) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from torch_tutorial_net import load_and_export

    pt2, onnx = load_and_export(state_dict, work)
    cls = f"{ROOT}/benchmarks/torch_tutorial_net.py:TutorialNet"
    return {"onnx": convert(str(onnx), work / "t-onnx", FLAGS, data),
            "pt2": convert(str(pt2), work / "t-pt2", FLAGS, data),
            "pth": convert(state_dict, work / "t-pth", ["--torch-class", cls, *FLAGS], data)}


def markdown(doc: dict) -> str:
    lines = ["# fer-convert routes: wall time and INT8 accuracy", "", f"Command: `{doc['command']}`", "",
             f"Machine: {doc['machine']}", "", "| network | route | exit | seconds | tflite-int8 acc | onnx-int8 acc |",
             "| --- | --- | --- | --- | --- | --- |"]
    for net, runs in doc["networks"].items():
        for route, r in runs.items():
            if not isinstance(r, dict) or "seconds" not in r:
                continue
            acc = {f: (r.get("formats", {}).get(f) or {}).get("accuracy") for f in ("tflite-int8", "onnx-int8")}
            cell = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
            lines.append(f"| {net} | {route} | {r['exit']} | {r['seconds']} | {cell(acc['tflite-int8'])} | "
                         f"{cell(acc['onnx-int8'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--torch-model", help="the tutorial network's state_dict (benchmarks/torch_tutorial_train.py)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown")
    a = ap.parse_args()
    import platform

    doc = {"command": " ".join(["python", *sys.argv]), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs "
           f"(shared), load average at start {os.getloadavg()[0]:.1f}", "networks": {}}
    with tempfile.TemporaryDirectory(prefix="convert-routes-") as work:
        doc["networks"]["fer-vgg"] = fer_vgg(a.data, Path(work))
        if a.torch_model:
            doc["networks"]["tutorial"] = tutorial(a.data, Path(work), a.torch_model)
    Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
    if a.markdown:
        Path(a.markdown).write_text(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
