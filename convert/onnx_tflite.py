"""ONNX -> TensorFlow SavedModel by onnx2tf, for the TFLite formats of an ONNX (or PyTorch) source.

onnx2tf (maintained; ONNX -> TF -> TFLite) rewrites a channels-first graph channels-last, so the SavedModel takes
N x H x W x C faces like a Keras model's, and every TFLite format (fp32, fp16, dynamic, INT8 with its recipe
search) is then made by the same code as for Keras models. Why onnx2tf: docs/convert.md, "From PyTorch".
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from fer_edge.convert.search import quiet
from fer_edge.runtime.core.errors import ModelError, require

# onnx2tf pins old releases of everything (TensorFlow 2.19, numpy 1.26, onnx 1.19): installed without them, beside
# what it needs and fer-edge's own TensorFlow (.ci/torch.sh does this)
ONNX2TF_PIP = "pip install --no-deps onnx2tf==1.29.24 onnx-graphsurgeon sng4onnx psutil 'tf_keras==2.21.*'"


@contextlib.contextmanager
def _no_sample_download():
    """onnx2tf fetches sample photos from the network (GitHub) for its check run when the input is a fixed-batch
    RGB image (a tutorial's batch-1 colour export): a device or CI machine may have no network, and a conversion
    must not depend on one. Seeded noise of the same shape takes their place, as any other input gets noise."""
    module = sys.modules.get("onnx2tf.onnx2tf")
    original = getattr(module, "download_test_image_data", None)
    if original is not None:
        module.download_test_image_data = lambda: np.random.default_rng(0).random((20, 128, 128, 3), np.float32)
    try:
        yield
    finally:
        if original is not None:
            module.download_test_image_data = original


def onnx_to_saved_model(onnx_path: Path, folder: Path, softmax: bool, log, keep_input: str | None = None,
                        batch: int | None = None) -> None:
    """`onnx_path` (the user's graph; `softmax`: append one, the model outputs logits) as a SavedModel;
    `keep_input`: the name of a channels-last input, which onnx2tf must not transpose (it takes 4-D inputs
    for channels-first otherwise); `batch`: the batch the graph fixes (the TFLite files then fix it too, and
    run one face at a time), None for any."""
    tf = require("tensorflow", "convert")
    try:
        import onnx2tf
    except ImportError:  # the format fails alone: the ONNX ones still ship
        raise ModelError(f"the TFLite formats of an ONNX or PyTorch model need onnx2tf: run  {ONNX2TF_PIP}") from None
    log(f"converting ONNX to a TensorFlow SavedModel (onnx2tf {onnx2tf.__version__})")
    try:
        with quiet(), _no_sample_download():
            model = onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(folder.parent / "o2tf"),
                                    disable_model_save=True, non_verbose=True, not_use_onnxsim=True,
                                    verbosity="error",
                                    keep_shape_absolutely_input_names=[keep_input] if keep_input else None)
    except SystemExit:  # onnx2tf exits on an operator it cannot convert
        raise ModelError(f"{onnx_path.name}: onnx2tf cannot convert this graph to TensorFlow") from None
    except Exception as exc:  # onnx2tf raises assorted types; report one line
        raise ModelError(f"onnx2tf failed: {str(exc).strip().splitlines()[0][:300]}") from None
    fn = model
    if softmax:
        fn = lambda x: tf.nn.softmax(model(x), axis=-1)  # noqa: E731 - the logits model's probabilities
    spec = tf.TensorSpec([batch, *model.inputs[0].shape[1:]], tf.float32, name="face")
    serve = tf.function(lambda face: {"probs": fn(face)}, input_signature=[spec])
    module = tf.Module()
    module.model = model
    with quiet():
        tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})
