"""Which architecture is cheapest per face on this CPU: every architecture of fer-train's table (untrained,
seeded weights: latency does not depend on what was learned), exported to fp32 and full-integer INT8 .tflite
(calibrated on 200 real Training faces), timed through the runtime's own Classifier at 1 thread on both LiteRT
kernel paths, beside its multiply-adds and parameters. Chose vgg-lite as the student; rerun on a board to see
how the balance moves there (ARM cores without int8 dot products favour fewer multiply-adds more strictly).

    python benchmarks/arch_choice.py --data ../shared/data --out benchmarks/arch_choice.md
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

SKIP = {"tutorial-vgg"}  # 42.6M parameters in dense layers: minutes to convert, and no candidate for a device


def export(model, meta, out: Path, calibration: np.ndarray) -> dict[str, Path]:
    import tensorflow as tf

    from fer_edge.runtime.model.metadata import write_metadata

    saved = out / "saved"
    model.export(str(saved), verbose=False)
    paths = {}
    for kind in ("fp32", "int8"):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if kind == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        paths[kind] = out / f"{kind}.tflite"
        paths[kind].write_bytes(conv.convert())
        write_metadata(paths[kind], meta)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True, help="Markdown file for the table")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)

    import keras

    from fer_edge.convert.bench import time_calls
    from fer_edge.convert.bench_e2e import Settings
    from fer_edge.convert.bench_report import machine
    from fer_edge.convert.cost import fmt_macs, model_cost
    from fer_edge.runtime.model.backends import Classifier
    from fer_edge.runtime.data.datasets import load_dataset
    from fer_edge.runtime.core.fileio import atomic_output
    from fer_edge.runtime.model.labels import get_label_set
    from fer_edge.runtime.model.metadata import ModelMetadata
    from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess
    from fer_edge.training.architectures import ARCHITECTURES, build

    spec = PreprocessSpec(size=(48, 48))
    train = load_dataset(args.data).subset("Training")
    pick = np.random.default_rng(0).permutation(len(train))[:200]
    calibration = preprocess(train.images[pick], spec)
    s = Settings(warmup=20, rounds=args.rounds, iters=100)
    rows = []
    for name in ARCHITECTURES:
        if name in SKIP:
            continue
        keras.utils.set_random_seed(0)
        model = build(name, (48, 48, 1), 7)
        meta = ModelMetadata(get_label_set("fer2013"), spec, provenance={"arch": name})
        with tempfile.TemporaryDirectory() as tmp:
            files = export(model, meta, Path(tmp), calibration)
            row = {"arch": name, **model_cost(model)}
            for kind, path in files.items():
                for kernels in ("default", "builtin"):
                    clf = Classifier(path, threads=1, kernels=kernels)
                    row[f"{kind}_{kernels}"] = time_calls(clf.backend.infer, calibration[:1], s.warmup, s.rounds,
                                                          s.iters)["p50_ms"]
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    m = machine()
    vgg = next(r for r in rows if r["arch"] == "vgg")
    lines = ["# Architecture choice: cost per face on this CPU", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, SIMD {', '.join(m['simd'])}; load average at start "
             f"{m['load_average_at_start']} (other work shared the machine: compare ratios within a column). "
             f"ms per face at 1 thread, batch 1, median of {s.rounds} rounds of {s.iters} calls, untrained weights.", "",
             "Command: `python benchmarks/arch_choice.py --data ../shared/data --out benchmarks/arch_choice.md`", "",
             "| architecture | multiply-adds | parameters | INT8 XNNPACK ms | INT8 built-in ms | fp32 XNNPACK ms "
             "| fp32 built-in ms | INT8 XNNPACK vs vgg |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {fmt_macs(r['macs'])} | {r['parameters']:,} | {r['int8_default']:.3f} | "
                     f"{r['int8_builtin']:.3f} | {r['fp32_default']:.3f} | {r['fp32_builtin']:.3f} | "
                     f"{r['int8_default'] / vgg['int8_default']:.2f}x |")
    with atomic_output(Path(args.out), force=True) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
