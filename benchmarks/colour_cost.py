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
        shipped = [ROOT / "models" / f"{m}_int8.tflite" for m in ("fer-vgg", "fer-lite")]
        json_out = Path(a.out).with_suffix(".json")
        run([str(bin_dir / "fer-bench"), *map(str, shipped + files), "--threads", "1", "--batches", "1",
             "--json", str(json_out), "--markdown", str(a.out), "--force", "--note",
             "Colour models' cost per face (benchmarks/colour_cost.py): MobileNetV2 alpha 0.35 with an 8-class "
             "head at 112 and 224 RGB, untrained (no accuracy figures for them), beside the shipped grey models."])
    rows = json.loads(json_out.read_text())["rows"]
    for r in rows:
        lat = r.get("latency", {}).get("t1_b1", {})
        print(f"{r['name']:40s} {r['kernels']:8s} macs {r.get('macs')} ms/face {lat.get('p50_ms')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
