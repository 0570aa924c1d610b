"""What a colour model costs per face, so a Raspberry Pi user can choose a size: a MobileNetV2 feature extractor
(alpha 0.35, the Teachable Machine backbone; seeded random weights: cost does not depend on what was learned) with
an 8-class head at 112x112 and at 224x224 RGB, exported by fer-convert to INT8 .tflite and .onnx (calibrated on
tfeid-dev's colour photos, cut as fer-edge cuts them; the accuracy gate is off: these nets learnt nothing), then
measured by fer-bench (multiply-adds, parameters, ms per face at 1 thread, batch 1) beside the shipped grey
fer-vgg and fer-lite.

    python benchmarks/colour_cost.py --data ../shared/data --out benchmarks/colour_cost.md
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = (112, 224)


def build(side: int, path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2((side, side, 3), alpha=0.35, include_top=False, weights=None,
                                          pooling="avg")
    out = keras.layers.Dense(8, activation="softmax")(base.output)
    keras.Model(base.input, out).save(path)


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, 3):  # 3: the gate, which these untrained nets are not held to
        sys.exit(f"{' '.join(cmd[:3])}... failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the data folder holding tfeid-dev/")
    p.add_argument("--out", required=True, help="the Markdown report (the JSON goes beside it)")
    a = p.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="colour-cost-") as tmp:
        files = []
        for side in SIDES:
            model = Path(tmp) / f"mobilenetv2-035-{side}.keras"
            build(side, model)
            out = Path(tmp) / f"export-{side}"
            run([str(bin_dir / "fer-convert"), str(model), "--int8", "--labels", "affectnet8", "--colour", "rgb",
                 "--normalize", "-1,1", "--data", str(Path(a.data) / "tfeid-dev"), "--max-drop", "100",
                 "--min-agreement", "0", "--onnx-recipe", "qdq-u8s8-perchannel-rr", "--out", str(out)])
            files += sorted(out.glob("*_int8.*"))
        groups = {f"mobilenetv2-035-{side}": [f for f in files if f"-{side}_" in f.name] for side in SIDES}
        groups.update({m: [ROOT / "models" / f"{m}_int8.tflite"] for m in ("fer-lite", "fer-vgg")})
        rows = []
        for name, group in groups.items():  # fer-bench measures one model's files a run
            out = Path(tmp) / f"{name}.json"
            run([str(bin_dir / "fer-bench"), *map(str, group), "--threads", "1", "--batches", "1", "--json", str(out)])
            doc = json.loads(out.read_text())
            rows += [{"model": name, **r} for r in doc["rows"]]
    doc = {"machine": doc["machine"], "command": "python benchmarks/colour_cost.py --data DATA --out " + a.out,
           "rows": rows}
    Path(a.out).with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    Path(a.out).write_text(markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = ["# What a colour model costs per face", "",
             f"Written by `{doc['command']}` on {m.get('cpu')} ({m.get('arch')}; SIMD flags "
             f"{m.get('simd', '?')}, load average {m.get('load_average_at_start')} at the last fer-bench's start: the machine was "
             "shared, so the ms are upper bounds): multiply-adds and parameters per face from the files' own "
             "metadata, ms per face at 1 thread and batch 1 (p50, the interpreter call alone) by fer-bench. The "
             "MobileNetV2 rows are untrained (cost does not depend on the weights); fer-vgg and fer-lite are the "
             "shipped grey models, for scale. Multiply-adds travel to other boards (deploy/BOARDS.md), the ms do not.",
             "", "| model | file | kernels | multiply-adds | parameters | ms per face (1 thread) |",
             "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lat = r.get("latency", {}).get("t1_b1", {})
        macs = f"{r['macs'] / 1e6:.1f} M" if r.get("macs") else "-"
        params = f"{r['parameters']:,}" if r.get("parameters") else "-"
        lines.append(f"| {r['model']} | `{r['name']}` | {r['kernels']} | {macs} | {params} | {lat.get('p50_ms', '-')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
