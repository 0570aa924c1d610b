"""Command-line argument groups of `fer-edge` and `fer-edge serve-api`, and what they mean to the library: each
group's values become the keywords or options dataclass the library takes (no library class reads an argparse
Namespace); each CLI module imports these, neither imports the other's parser."""
from __future__ import annotations

import argparse
import sys

from fer_edge.runtime.serve.access import NO_TOKEN_FLAG, TOKEN_ENV, Access, access_for
from fer_edge.runtime.faces.detectors import DEFAULT_DETECTOR, DETECTORS
from fer_edge.runtime.faces.framing import FRAMINGS
from fer_edge.runtime.model.labels import LABEL_SETS
from fer_edge.runtime.serve.mqtt import PASSWORD_ENV, MqttOptions
from fer_edge.runtime.model.metadata import ModelFlags
from fer_edge.runtime.model.preprocess import ALIGNS, COLOURS, NORMALIZE_CHOICES
from fer_edge.runtime.serve.preview import PreviewOptions, parse_bind


def fix_argv(argv: list[str] | None) -> list[str]:
    """`--normalize -1,1` -> `--normalize=-1,1` (argparse would take '-1,1' for an option); for every CLI."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--normalize" and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"--normalize={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="classifier .tflite or .onnx, or the short name of a shipped model "
                   "(e.g. vgg: the accurate one; default: the model shipped as fer-edge's default)")
    model_flag_arguments(g, equalize_off=True)
    g.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the interpreter's)")
    g.add_argument("--providers", help="onnxruntime providers, comma-separated, e.g. "
                   "CUDAExecutionProvider,CPUExecutionProvider (default CPU)")
    g.add_argument("--kernels", choices=("default", "builtin"), default=None,
                   help="LiteRT kernels (.tflite): default (XNNPACK, the default) or builtin (reference)")


def model_flag_arguments(g, equalize_off: bool = False) -> None:
    """What a user states about a model without fer-edge metadata (fer-edge, serve-api, fer-convert, fer-eval)."""
    g.add_argument("--labels", metavar="SET|NAMES|FILE", help="the model's classes in output order, for a model "
                   f"without fer-edge metadata: a label set ({', '.join(LABEL_SETS)}), comma-separated names, or a "
                   "labels.txt (one name a line, or Teachable Machine's '0 Name' lines)")
    g.add_argument("--normalize", choices=NORMALIZE_CHOICES, help="input scaling of a model without metadata "
                   "(imagenet: ImageNet's mean and std, for colour models)")
    g.add_argument("--mean", metavar="R,G,B", help="per-channel mean on the 0-1 scale, in the model's channel order "
                   "(with --std; instead of --normalize)")
    g.add_argument("--std", metavar="R,G,B", help="per-channel standard deviation on the 0-1 scale (with --mean)")
    g.add_argument("--colour", choices=COLOURS,
                   help="what a model without metadata takes: grey faces, or colour in rgb or bgr order")
    g.add_argument("--align", choices=ALIGNS, help="none, or 5point: warp each face onto a 112x112-style template "
                   "from the detector's five landmarks before the crop (a model without metadata)")
    if equalize_off:
        g.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=None,
                       help="histogram-equalise faces (overrides the model's metadata)")
    else:
        g.add_argument("--equalize", action="store_true", default=None,
                       help="the model (without metadata) was trained on histogram-equalised faces")


def model_flags(a: argparse.Namespace) -> ModelFlags:
    """The flags of `model_flag_arguments`, as given."""
    return ModelFlags(labels=a.labels, normalize=a.normalize, mean=a.mean, std=a.std, equalize=a.equalize,
                      colour=a.colour, align=a.align)


def min_confidence_argument(g) -> None:
    """--min-confidence, for fer-edge and serve-api."""
    g.add_argument("--min-confidence", type=float, metavar="P", help="a face is sure when its top probability is at "
                   "least P, 0-1 (default: the threshold stored in the model; 0 = every face sure); shares, dominant "
                   "emotions and Home Assistant count sure faces only")


def classifier_options(a: argparse.Namespace) -> dict:
    """The model group's values as Classifier/PipelineOptions keywords (None: not chosen)."""
    providers = [x.strip() for x in a.providers.split(",") if x.strip()] if a.providers else None
    return {"flags": model_flags(a), "threads": a.threads, "providers": providers, "kernels": a.kernels}


def detector_arguments(g) -> None:
    """Detector choice, its declared options (--detect-NAME) and the framing, for fer-edge and serve-api."""
    g.add_argument("--detector", choices=sorted(DETECTORS), default=DEFAULT_DETECTOR,
                   help=f"face detector (default {DEFAULT_DETECTOR}; haar needs OpenCV 4.x)")
    g.add_argument("--detector-model", metavar="PATH", help="the detector's model file (default: YuNet's shipped "
                   "with fer-edge; BlazeFace's face_detection_short_range.tflite, else found in an installed mediapipe)")
    g.add_argument("--detect-size", type=int, metavar="PX", help="width of the copy of each frame the detector "
                   "sees (default: the detector's, for yunet 320 on streams and 640 on photos)")
    for name in sorted({k for cls in DETECTORS.values() for k in cls.OPTIONS}):
        g.add_argument(f"--detect-{name}", type=float, metavar="X", help=" / ".join(
            f"{cls.name}: {cls.OPTIONS[name]}" for cls in DETECTORS.values() if name in cls.OPTIONS))
    g.add_argument("--framing", choices=list(FRAMINGS), default="fer2013", help="how faces are cut for the "
                   "classifier: fer2013 (FER2013's eye position and scale, head tilt levelled, where the detector "
                   "gives landmarks) or box (the detector's box)")


def detector_options(a: argparse.Namespace) -> dict:
    """The detector group's values as PipelineOptions keywords; a --detect-X flag not given is left to the detector."""
    options = {k: getattr(a, f"detect_{k}") for cls in DETECTORS.values() for k in cls.OPTIONS
               if getattr(a, f"detect_{k}") is not None}
    return {"detector": a.detector, "detector_model": a.detector_model, "detect_size": a.detect_size,
            "detect_options": options, "framing": a.framing}


def add_mqtt_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("MQTT events (pip install 'fer-edge[mqtt]')")
    g.add_argument("--mqtt", metavar="URL", help="publish per-face events and a periodic summary to "
                   "mqtt://[user:pass@]host[:port]/topic (mqtts:// for TLS); a user without a password "
                   f"reads it from ${PASSWORD_ENV}")
    g.add_argument("--mqtt-tls", action="store_true", help="TLS with mqtt:// too (mqtts:// implies it)")
    g.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate(s) to verify the broker (default: the system's)")
    g.add_argument("--mqtt-cert", metavar="FILE", help="client certificate for TLS client authentication")
    g.add_argument("--mqtt-key", metavar="FILE", help="private key of --mqtt-cert")
    g.add_argument("--mqtt-insecure", action="store_true", help="TLS without checking the broker's host name")
    g.add_argument("--mqtt-qos", type=int, choices=(0, 1), default=1, help="QoS of events (default 1)")
    g.add_argument("--mqtt-queue", type=int, default=1000, metavar="N",
                   help="messages kept while the broker is unreachable; the oldest are dropped (default 1000)")
    g.add_argument("--mqtt-summary-every", type=float, default=10.0, metavar="S",
                   help="seconds between summary messages (default 10; 0 = only the final one)")
    g.add_argument("--mqtt-client-id", metavar="ID", help="MQTT client id (default fer-edge-<host>-<pid>)")
    g.add_argument("--mqtt-flush-timeout", type=float, default=5.0, metavar="S",
                   help="at the end, wait up to S seconds to deliver queued messages (default 5)")


def mqtt_options(a: argparse.Namespace) -> MqttOptions:
    """The --mqtt group's values as the sink's options."""
    return MqttOptions(url=a.mqtt, tls=a.mqtt_tls, ca=a.mqtt_ca, cert=a.mqtt_cert, key=a.mqtt_key,
                       insecure=a.mqtt_insecure, qos=a.mqtt_qos, queue=a.mqtt_queue,
                       summary_every=a.mqtt_summary_every, client_id=a.mqtt_client_id,
                       flush_timeout=a.mqtt_flush_timeout)


def add_preview_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("browser preview")
    g.add_argument("--serve", metavar="[HOST:]PORT", help="serve a live page (the annotated frames, each face's bars and "
                   "its chart of the last minute) over HTTP (a bare port binds to 127.0.0.1; give 0.0.0.0:PORT to reach "
                   "it from other machines)")
    token_arguments(g)


def token_arguments(g) -> None:
    """The token options of both servers (the preview and serve-api)."""
    g.add_argument("--serve-token-file", metavar="FILE", help="require the token on the first line of FILE on every "
                   "request (?token=T or an 'Authorization: Bearer T' header); also from $" + TOKEN_ENV)
    g.add_argument("--serve-token", metavar="TOKEN", help="the token itself (visible to local users in the process "
                   f"list: prefer --serve-token-file or ${TOKEN_ENV})")
    g.add_argument(NO_TOKEN_FLAG, action="store_true", help="serve without a token even beyond loopback (anyone who "
                   "can reach the port gets in; without a token option a token is made for the run and printed)")


def access_options(a: argparse.Namespace, host: str) -> Access:
    """The token options as the access rule of a server bound to `host` (an empty token is an error)."""
    return access_for(host, a.serve_token, a.serve_token_file, a.no_token)


def preview_options(a: argparse.Namespace) -> PreviewOptions:
    """The --serve group's values as the preview's options; the token is read here (an empty one is an error)."""
    return PreviewOptions(a.serve, access_options(a, parse_bind(a.serve)[0]))
