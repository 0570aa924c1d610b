"""HTTP API (`fer-edge serve-api`, FastAPI + uvicorn behind the `api` extra).

    fer-edge serve-api --port 8000 [--model M] [--detector blazeface --detector-model F] [--max-upload-mb 10]
    curl -F file=@photo.jpg http://127.0.0.1:8000/predict
    curl http://127.0.0.1:8000/health            # the schema: /openapi.json, the docs: /docs

`POST /predict` (multipart field `file`, any image OpenCV decodes) answers the faces with their box,
label and label->probability map. The model is loaded once when the app is made; requests share it under
a lock (an interpreter is not thread-safe). Uploads over the size limit get 413 before they are parsed
(by Content-Length, or counted while streaming when there is none); an empty or undecodable upload, or one
whose header declares too many pixels (checked before decoding, runtime/images.py), gets 400 with a
message; a request without `file` gets FastAPI's 422. A server error is a bug.
"""
# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations as objects, and the
# response models are local to create_app (they name its labels), where string annotations cannot be resolved
import json
import sys
import threading
import time

from fer_edge.runtime.errors import FerEdgeError, require
from fer_edge.runtime.images import FORMATS, MAX_PIXELS, decode_image

DEFAULT_MAX_UPLOAD_MB = 10.0


def _problem(status: int, detail: str):
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, before the app parses it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"the upload is larger than the limit of {self.limit} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            for message in _problem(413 if length.isdigit() else 400,
                                    too_large if length.isdigit() else "Content-Length is not a number"):
                await send(message)
            return
        state = {"received": 0, "exceeded": False, "started": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["exceeded"] = True
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is replaced below
            return message

        async def guarded_send(message):
            if state["exceeded"]:
                return
            state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
        if state["exceeded"] and not state["started"]:
            for message in _problem(413, too_large):
                await send(message)


def create_app(options=None, max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6), pipeline=None):
    """The FastAPI app around one Pipeline (made from `options`, or the one given)."""
    fastapi = require("fastapi", "api")
    require("multipart", "api")  # python-multipart: FastAPI's form parser, needed by UploadFile
    from fastapi import File, HTTPException, UploadFile
    from pydantic import BaseModel, Field

    from fer_edge.runtime.pipeline import Pipeline, PipelineOptions

    pipe = pipeline or Pipeline(options or PipelineOptions())
    lock = threading.Lock()

    class Face(BaseModel):
        box: list[int] = Field(description="x, y, width, height in image pixels")
        label: str
        probs: dict[str, float] = Field(description="label -> probability")
        score: float = Field(description="detector confidence")

    class Prediction(BaseModel):
        source: str = Field(description="the uploaded file's name")
        width: int
        height: int
        faces: list[Face]
        labels: list[str]
        ms: float = Field(description="detection + classification time")

    class Health(BaseModel):
        status: str
        model: str
        backend: str
        detector: str
        framing: str = Field(description="how faces are cut for the classifier")
        labels: list[str]

    class Problem(BaseModel):
        detail: str

    app = fastapi.FastAPI(title="fer-edge", version=_version(),
                          description="Facial expressions in an image: faces, labels and probabilities.")
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    app.state.pipeline = pipe

    @app.get("/health", response_model=Health)
    def health() -> Health:
        c = pipe.classifier
        return Health(status="ok", model=c.path.name, backend=c.backend.interpreter_module,
                      detector=pipe.options.detector, framing=pipe.options.framing, labels=list(pipe.labels))

    @app.post("/predict", response_model=Prediction,
              responses={400: {"model": Problem, "description": f"empty, undecodable, not {FORMATS}, or "
                                                      f"over {MAX_PIXELS} pixels (read from its header)"},
                         413: {"model": Problem, "description": f"upload over {max_upload_bytes} bytes"}})
    def predict(file: UploadFile = File(description="an image (JPEG, PNG, BMP, WebP, TIFF)")) -> Prediction:
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"the upload is larger than the limit of {max_upload_bytes} bytes")
        try:
            image = decode_image(data)  # the size is checked from the header, before any pixel is decoded
            t0 = time.perf_counter()
            with lock:
                result = pipe.process_photo(image, source=file.filename or "")
        except FerEdgeError as exc:
            raise HTTPException(400, str(exc)) from None
        ms = (time.perf_counter() - t0) * 1000
        faces = [Face(box=list(f.box), label=f.label, probs={k: round(v, 5) for k, v in f.probs.items()},
                      score=round(float(f.score), 4)) for f in result.faces]
        return Prediction(source=result.source, width=image.shape[1], height=image.shape[0], faces=faces, labels=list(pipe.labels),
                          ms=round(ms, 3))

    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer-edge")
    except PackageNotFoundError:
        return "0"


def api_parser():
    from fer_edge.runtime.cli_args import detector_arguments, model_arguments
    from fer_edge.runtime.config import ConfigurableParser, add_config_argument

    p = ConfigurableParser(prog="fer-edge serve-api", description="HTTP API: POST /predict with an image, "
                                "GET /health, schema at /openapi.json (pip install 'fer-edge[api]').")
    model_arguments(p)
    detector_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest accepted upload (default {DEFAULT_MAX_UPLOAD_MB:g})")
    add_config_argument(p)
    return p


def serve_api(argv: list[str]) -> int:
    from fer_edge.runtime.cli_args import classifier_options, detector_options
    from fer_edge.runtime.config import with_config
    from fer_edge.runtime.pipeline import Pipeline, PipelineOptions

    p = api_parser()
    a = p.parse_args(with_config(p, argv))
    if a.max_upload_mb <= 0:
        raise FerEdgeError(f"--max-upload-mb must be above 0, found {a.max_upload_mb}")
    uvicorn = require("uvicorn", "api")
    opts = PipelineOptions(model=a.model, **detector_options(a), **classifier_options(a))
    sock = _listen(a.host, a.port)  # before the model loads: a taken port is a one-line error, no "API on"
    try:
        with Pipeline(opts) as pipe:
            app = create_app(max_upload_bytes=int(a.max_upload_mb * 1e6), pipeline=pipe)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
            print(f"fer-edge: API on http://{a.host}:{sock.getsockname()[1]}/ (schema /openapi.json)", file=sys.stderr)
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
