"""fer-convert: Keras, ONNX or PyTorch model -> TFLite / ONNX (fp32, fp16, dynamic, INT8) with a parity report.

    fer-convert --int8 model.h5 --data DATA --out DIR
    fer-convert --int8 model.onnx --labels fer2013 --normalize 0,1 --equalize --data DATA --out DIR
    fer-convert --int8 model.pth --torch-class net.py:Net --labels fer2013 --normalize 0,1 --data DATA --out DIR
    fer-convert model.keras --formats tflite-fp32,tflite-int8,onnx-int8 --data DATA --out DIR
    fer-convert verify DIR/model_int8.tflite --reference model.keras --data DATA
    fer-convert verify models/fer-vgg_int8.tflite --reference models/fer-vgg_golden.npz --data DATA   # no TF

Exit codes: 0 success, 2 a user error (one line `ErrorType: message`), 3 an exported file broke the
accuracy budget (--max-drop, --min-agreement); the report says which.
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
import sys

from fer_edge.runtime.core.errors import FerEdgeError, cli_main


def _log(msg: str) -> None:
    from fer_edge.runtime.core.progress import printing

    with printing():  # a progress bar (calibration, the recipe search) is redrawn below the line
        print(msg, file=sys.stderr, flush=True)


def _common(p: argparse.ArgumentParser) -> None:
    from fer_edge.convert.parity import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT
    from fer_edge.convert.source import UNSAFE_FLAG
    from fer_edge.runtime.cli_args import model_flag_arguments

    p.add_argument("--data", help="labelled faces: FER2013 (.npz, .csv, image folders, or a folder holding "
                   "fer2013.npz), or a folder of photos with a labels.csv (file,label) or one folder per class, whose "
                   "faces are found and cut as fer-edge will cut them")
    p.add_argument("--out", help="output folder (convert: default MODEL_export/; verify: no report files unless given)")
    model_flag_arguments(p)
    p.add_argument("--eval-split", default="PrivateTest", choices=("PublicTest", "PrivateTest", "Training"))
    p.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP, help="largest accuracy drop, percentage points")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help="smallest share of faces with the reference's top-1 class (0..1)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument(UNSAFE_FLAG, action="store_true",
                   help="load a Keras model that holds Python code (Lambda layers), or a whole pickled PyTorch "
                        "model: it runs that code, so only for a file you trust (Keras safe_mode off)")


def convert_parser() -> argparse.ArgumentParser:
    from fer_edge.convert.formats import FORMATS, INT8_FORMATS
    from fer_edge.convert.onnx_int8 import RECIPES

    p = argparse.ArgumentParser(prog="fer-convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=".keras, Keras 2 .h5, SavedModel folder, .onnx, PyTorch .pt2 (torch.export), or a "
                   "PyTorch state_dict .pth/.pt with --torch-class")
    p.add_argument("--torch-class", metavar="FILE.py:CLASS",
                   help="the class that defines the network a state_dict .pth holds (weights read weights_only)")
    p.add_argument("--input-size", metavar="SIDE|HxW", help="the input size of a PyTorch state_dict's network "
                   "(a .pth holds none; default 48): 112, 224, 112x96 ...")
    p.add_argument("--int8", action="store_true", help=f"shorthand for --formats {','.join(INT8_FORMATS)}")
    p.add_argument("--formats", help=f"comma-separated: {','.join(FORMATS)} (default: all)")
    p.add_argument("--calibration", help="reuse a calibration set NAME.npz (+ NAME.json) instead of building one")
    p.add_argument("--calibration-size", type=int, default=500)
    p.add_argument("--calibration-seed", type=int, default=0)
    p.add_argument("--force-calibration", action="store_true",
                   help="accept a calibration set under 100 faces or missing a class")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; tf2onnx handles 13-18)")
    p.add_argument("--integer-only", action="store_true",
                   help="INT8 files stay fully integer (for an NPU or a microcontroller): the recipe search never "
                   "keeps layers in float, and the parity gate fails when no integer recipe meets the budget")
    p.add_argument("--onnx-recipe", choices=list(RECIPES), default=None,
                   help="skip the ONNX INT8 recipe search and use this one")
    _common(p)
    return p


def parse_kernel_paths(value: str) -> tuple[str, ...]:
    from fer_edge.convert.parity import KERNEL_PATHS

    paths = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in paths if v not in KERNEL_PATHS]
    if bad or not paths or len(set(paths)) != len(paths):
        raise argparse.ArgumentTypeError(f"expected distinct kernel paths from {','.join(KERNEL_PATHS)}, found {value!r}")
    return paths


def verify_parser() -> argparse.ArgumentParser:
    from fer_edge.convert.parity import KERNEL_PATHS

    p = argparse.ArgumentParser(prog="fer-convert verify",
                                description="Measure existing .tflite/.onnx files against their Keras reference.")
    p.add_argument("files", nargs="+", help=".tflite / .onnx files (a bare shipped name such as fer-vgg_int8.tflite, "
                   "not in the working folder: the installed package's file)")
    p.add_argument("--reference", required=True, help="the Keras model the files were made from, or its golden "
                   "outputs (.npz, see fer_edge.convert.golden): then no TensorFlow is needed; a bare shipped name "
                   "(fer-vgg_golden.npz) is the installed package's")
    p.add_argument("--kernels", default=",".join(KERNEL_PATHS), type=parse_kernel_paths,
                   help="LiteRT kernel paths to measure INT8 .tflite files on, comma-separated (default: "
                   "%(default)s; 'builtin' alone where XNNPACK cannot run, e.g. under qemu emulation)")
    p.add_argument("--sample", type=int, metavar="N",
                   help="measure a seeded random N of the split's faces, the reference re-scored on the same "
                        "faces (slow machines, e.g. an emulated board); default: every face")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of --sample (default 0)")
    _common(p)
    return p


def _run(argv: list[str]) -> int:
    from fer_edge.convert.formats import FORMATS, INT8_FORMATS, parse_formats
    from fer_edge.convert.pipeline import ConvertOptions, VerifyOptions, convert, verify
    from fer_edge.runtime.cli_args import model_flags

    if argv and argv[0] == "verify":
        a = verify_parser().parse_args(argv[1:])
        if not a.data:
            raise FerEdgeError("verify needs --data DATA to measure the files on")
        doc, code = verify(VerifyOptions(
            files=a.files, reference=a.reference, data=a.data, out=a.out, flags=model_flags(a), eval_split=a.eval_split, max_drop=a.max_drop,
            min_agreement=a.min_agreement, force=a.force, kernel_paths=a.kernels, sample=a.sample,
            sample_seed=a.sample_seed, unsafe_deserialization=a.unsafe_deserialization), log=_log)
    else:
        a = convert_parser().parse_args(argv)
        if a.int8 and a.formats:
            raise FerEdgeError("give either --int8 or --formats, not both")
        if a.calibration_size < 1:
            raise FerEdgeError(f"--calibration-size must be positive, found {a.calibration_size}")
        formats = parse_formats(",".join(INT8_FORMATS) if a.int8 else a.formats or ",".join(FORMATS))
        opts = ConvertOptions(
            model=a.model, formats=formats, out=a.out, data=a.data, calibration=a.calibration,
            calibration_size=a.calibration_size, calibration_seed=a.calibration_seed,
            force_calibration=a.force_calibration, flags=replace(model_flags(a), input_size=a.input_size), eval_split=a.eval_split, max_drop=a.max_drop, min_agreement=a.min_agreement, force=a.force,
            unsafe_deserialization=a.unsafe_deserialization, torch_class=a.torch_class,
            format_options={"opset": a.opset, "onnx_recipe": a.onnx_recipe, "integer_only": a.integer_only,
                            "calibration": a.calibration},
            command=shlex.join(["fer-convert", *argv]))
        doc, code = convert(opts, log=_log)
    if doc.eval is not None:
        print(f"parity on {doc.eval.split}: {'pass' if doc.passed else 'FAIL'}")
    for f in doc.failures:
        print(f"FAIL {f}")
    return code


@cli_main  # exit codes and the one-line error, for every fer-* command
def main(argv=None) -> int:
    from fer_edge.runtime.cli_args import fix_argv

    return _run(fix_argv(argv))


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
