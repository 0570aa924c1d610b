#!/usr/bin/env bash
# On the device machine (JAX with CUDA, no TensorFlow, no package index), from the repository root:
#   bash training/device_train.sh --minutes 8 [--arch vgg] [--teacher models/fer-vgg.keras] ...
# Installs the carried wheels (.device/wheels: keras and what the machine lacks of its pure-Python needs) into
# a folder of its own, makes the working tree importable as fer_edge, and trains on .device/faces.npz (both made
# here, see docs/training-on-a-gpu.md). Everything comes back under $OUT: run/ (model.keras after every
# improvement, state.json, history.jsonl, eval/) and train.log.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${FER_EDGE_WHEELS:-.device/wheels}
PACK=${FER_EDGE_PACK:-.device/faces.npz}
SITE=${FER_EDGE_SITE:-/tmp/fer-edge-site}
OUT=${OUT:-out/device}
for need in "$PACK" "$WHEELS"; do
    [ -e "$need" ] || { echo "device_train.sh: $need not found: make it first (docs/training-on-a-gpu.md) and carry .device" >&2; exit 2; }
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
mkdir -p "$SITE/fer_edge" "$OUT"
# the package layout pyproject.toml maps: fer_edge itself from runtime/_package, its subpackages from their folders
for f in runtime/_package/*; do ln -sfn "$PWD/$f" "$SITE/fer_edge/$(basename "$f")"; done
for pkg in runtime calibration convert training models; do ln -sfn "$PWD/$pkg" "$SITE/fer_edge/$pkg"; done
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
python3 -c "import jax; print('jax', jax.__version__, 'devices:', jax.devices())"
python3 -m fer_edge.training.device_train train --data "$PACK" --out "$OUT/run" "$@" 2>&1 | tee "$OUT/train.log"
