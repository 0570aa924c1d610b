"""Conversion wall time and INT8 accuracy of fer-convert's routes on the same network (issue 37).

fer-vgg: the Keras route (models/fer-vgg.keras) against the ONNX route (the same network exported to ONNX by
fer-convert's own tf2onnx step, then converted as an .onnx file); with --torch-model (the tutorial network's
state_dict, benchmarks/torch_tutorial_train.py), its .pth + --torch-class, .pt2 and .onnx routes and the Keras
route on the same network with the same weights (benchmarks/torch_tutorial_net.save_keras_port), and how often
the routes' INT8 files agree with each other on PrivateTest.
Every run is `fer-convert --int8` in a subprocess, timed from start to exit; results go to --json / --markdown.
--networks picks which networks run; the others keep their rows from the existing --json file.

    python benchmarks/convert_routes.py --data DATA --json benchmarks/convert_routes.json --markdown benchmarks/convert_routes.md
    python benchmarks/convert_routes.py --data DATA --torch-model OUT/tutorial.pth --networks tutorial \
        --json benchmarks/convert_routes.json --markdown benchmarks/convert_routes.md
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
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from torch_tutorial_net import TutorialNet, load_and_export, save_keras_port

    pt2, onnx = load_and_export(state_dict, work)
    net = TutorialNet()
    net.load_state_dict(torch.load(state_dict, weights_only=True))
    save_keras_port(net.eval(), work / "tutorial.keras")
    cls = f"{ROOT}/benchmarks/torch_tutorial_net.py:TutorialNet"
    runs = {"pth": convert(state_dict, work / "t-pth", ["--torch-class", cls, *FLAGS], data),
            "pt2": convert(str(pt2), work / "t-pt2", FLAGS, data),
            "onnx": convert(str(onnx), work / "t-onnx", FLAGS, data),
            "keras": convert(str(work / "tutorial.keras"), work / "t-keras", FLAGS, data)}
    runs["int8_agreement_between_routes"] = route_agreement(work, data, list(runs))
    return runs


def route_agreement(work: Path, data: str, routes: list[str]) -> dict:
    """Top-1 agreement on PrivateTest between the routes' INT8 files of the same format ("a vs b" -> share)."""
    from fer_edge.runtime.data.datasets import read_npz
    from fer_edge.runtime.model.backends import Classifier

    test = read_npz(Path(data) / "fer2013.npz").subset("PrivateTest")
    tops = {f"{r}/{f.suffix[1:]}": Classifier(f).predict_batched(test.images).argmax(1)
            for r in routes for f in sorted((work / f"t-{r}").glob("*_int8.*"))}
    names = sorted(tops)
    return {f"{a} vs {b}": round(float((tops[a] == tops[b]).mean()), 4)
            for i, a in enumerate(names) for b in names[i + 1:] if a.split("/")[1] == b.split("/")[1]}


def markdown(doc: dict) -> str:
    lines = ["# fer-convert routes: wall time and INT8 accuracy", "", f"Command: `{doc['command']}`"]
    cell = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    for net, runs in doc["networks"].items():
        lines += ["", f"## {net}", "", f"Machine: {runs.get('machine', doc['machine'])}", "",
                  "| route | exit | seconds | tflite-int8 acc | onnx-int8 acc |", "| --- | --- | --- | --- | --- |"]
        for route, r in runs.items():
            if isinstance(r, dict) and "seconds" in r:
                acc = [(r.get("formats", {}).get(f) or {}).get("accuracy") for f in ("tflite-int8", "onnx-int8")]
                lines.append(f"| {route} | {r['exit']} | {r['seconds']} | {cell(acc[0])} | {cell(acc[1])} |")
        agree = runs.get("int8_agreement_between_routes")
        if agree:
            lines += ["", "INT8 top-1 agreement between the routes' files on PrivateTest:", "",
                      "| files | agreement |", "| --- | --- |", *[f"| {k} | {cell(v)} |" for k, v in agree.items()]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--torch-model", help="the tutorial network's state_dict (benchmarks/torch_tutorial_train.py)")
    ap.add_argument("--networks", default="fer-vgg,tutorial", help="comma-separated: fer-vgg, tutorial")
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown")
    a = ap.parse_args()
    import platform

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs (shared), load average at start {os.getloadavg()[0]:.1f}"
    old = json.loads(Path(a.json).read_text()) if Path(a.json).is_file() else {}
    doc = {"command": " ".join(["python", *sys.argv]), "machine": machine, "networks": old.get("networks", {})}
    for name in ("fer-vgg", "tutorial"):  # rows kept from an earlier run say their own machine line
        if name in doc["networks"] and "machine" not in doc["networks"][name]:
            doc["networks"][name]["machine"] = old.get("machine", "")
    wanted = a.networks.split(",")
    with tempfile.TemporaryDirectory(prefix="convert-routes-") as work:
        if "fer-vgg" in wanted:
            doc["networks"]["fer-vgg"] = {"machine": machine, **fer_vgg(a.data, Path(work))}
        if "tutorial" in wanted and a.torch_model:
            doc["networks"]["tutorial"] = {"machine": machine, **tutorial(a.data, Path(work), a.torch_model)}
    Path(a.json).write_text(json.dumps(doc, indent=1) + "\n")
    if a.markdown:
        Path(a.markdown).write_text(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
