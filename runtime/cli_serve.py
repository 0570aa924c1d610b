"""`fer-edge serve-api`'s command line: its options, and the server started from them. The app itself (routes,
upload limit, token gate) is runtime/serve/api.py; this is the CLI layer's part, beside cli.py."""
from __future__ import annotations

import sys

from fer_edge.runtime.cli_args import (access_options, classifier_options, detector_arguments, detector_options,
                                       min_confidence_argument, model_arguments, token_arguments)
from fer_edge.runtime.config import ConfigurableParser, add_config_argument, with_config
import fer_edge.runtime.core.stop as stop
from fer_edge.runtime.core.errors import FerEdgeError, require
from fer_edge.runtime.serve.access import base_url
from fer_edge.runtime.serve.api import DEFAULT_MAX_UPLOAD_MB


def api_parser():
    p = ConfigurableParser(prog="fer-edge serve-api", description="HTTP API: POST /predict with an image, "
                                "GET /health, schema at /openapi.json (pip install 'fer-edge[api]').")
    model_arguments(p)
    detector_arguments(p)
    min_confidence_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest accepted upload (default {DEFAULT_MAX_UPLOAD_MB:g})")
    token_arguments(p.add_argument_group("access (every path but /health; beyond loopback a token is made when "
                                         "none is given)"))
    add_config_argument(p)
    return p


def serve_api(argv: list[str]) -> int:
    from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions
    from fer_edge.runtime.serve.api import create_app

    p = api_parser()
    a = p.parse_args(with_config(p, argv))
    if a.max_upload_mb <= 0:
        raise FerEdgeError(f"--max-upload-mb must be above 0, found {a.max_upload_mb}")
    uvicorn = require("uvicorn", "api")
    access = access_options(a, a.host)  # an empty or unreadable token: one line, before anything listens
    opts = PipelineOptions(model=a.model, min_confidence=a.min_confidence, **detector_options(a),
                           **classifier_options(a))
    sock = _listen(a.host, a.port)  # before the model loads: a taken port is a one-line error, no "API on"
    try:
        with Pipeline(opts) as pipe:
            app = create_app(max_upload_bytes=int(a.max_upload_mb * 1e6), pipeline=pipe, access=access)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # no access log: ?token= stays out
            base = base_url(a.host, sock.getsockname()[1])
            print(f"fer-edge: API on {base}/ (schema /openapi.json, docs /docs"
                  f"{'; token required' if access.token else ''})", file=sys.stderr)
            access.announce("API", base, "/docs")
            with stop.service():  # SIGTERM is its normal end: requests in flight are answered, then exit 0
                server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _listen(host: str, port: int):
    import socket

    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    reuse_port=False)
    except OSError as exc:
        raise FerEdgeError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
