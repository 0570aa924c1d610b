"""HTTP API (`fer-edge serve-api`, FastAPI + uvicorn behind the `api` extra).

    fer-edge serve-api --port 8000 [--model M] [--detector blazeface --detector-model F] [--max-upload-mb 10]
    curl -F file=@photo.jpg http://127.0.0.1:8000/predict
    curl http://127.0.0.1:8000/health            # the schema: /openapi.json, the docs: /docs
    fer-edge serve-api --host 0.0.0.0 --serve-token-file /etc/fer-edge/token
    curl -H "Authorization: Bearer $(cat /etc/fer-edge/token)" -F file=@photo.jpg http://board:8000/predict

`POST /predict` (multipart field `file`, any image OpenCV decodes) answers the faces with their box,
label and label->probability map. The model is loaded once when the app is made; requests share it under
a lock (an interpreter is not thread-safe). Uploads over the size limit get 413 before they are parsed
(by Content-Length, or counted while streaming when there is none); an empty or undecodable upload, or one
whose header declares too many pixels (checked before decoding, runtime/media/images.py), gets 400 with a
message; a request without `file` gets FastAPI's 422. A server error is a bug. Beyond loopback every path
but /health needs the token (runtime/serve/access.py; checked by TokenGate before anything else): an
`Authorization: Bearer` header, or `?token=` for a browser, which is how /docs passes it on to the schema.
"""
# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations as objects, and the
# response models are made inside a function (_response_models: pydantic comes with the extra), where string
# annotations cannot be resolved
import json
import threading
import time
import urllib.parse

from fer_edge.runtime.serve.access import WWW_AUTHENTICATE, Access
from fer_edge.runtime.core.errors import FerEdgeError, require
from fer_edge.runtime.core.version import package_version
from fer_edge.runtime.media.images import FORMATS, MAX_PIXELS, decode_image

DEFAULT_MAX_UPLOAD_MB = 10.0


OPEN_PATHS = ("/health",)  # says nothing about the camera or the images: a load balancer may ask freely


def _problem(status: int, detail: str, extra=()):
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra]
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


class TokenGate:
    """ASGI middleware: a bare 401 for a request without the access's token, before the app sees it."""

    def __init__(self, app, access: Access):
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.access.token is None or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1")
        if self.access.allows(scope.get("query_string", b"").decode("latin-1"), authorization):
            return await self.app(scope, receive, send)
        self.access.refused("API", (scope.get("client") or ("unknown",))[0], scope["path"])
        for message in _problem(401, "unauthorized", [WWW_AUTHENTICATE]):
            await send(message)


def create_app(options=None, max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6), pipeline=None,
               access: Access | None = None):
    """The FastAPI app around one Pipeline (made from `options`, or the one given); `access` says who may use
    it (default: anyone; serve-api makes it from the token options and the address)."""
    fastapi = require("fastapi", "api")
    require("multipart", "api")  # python-multipart: FastAPI's form parser, needed by UploadFile
    from fastapi import File, HTTPException, UploadFile

    from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions

    pipe = pipeline or Pipeline(options or PipelineOptions())
    lock = threading.Lock()
    Face, Prediction, Health, Problem = _response_models()
    app = fastapi.FastAPI(title="fer-edge", version=package_version(), docs_url=None, redoc_url=None,
                          description="Facial expressions in an image: faces, labels and probabilities.")
    app.add_middleware(BodyLimit, limit=max_upload_bytes)
    _docs_pages(app)
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
                      score=round(float(f.score), 4), sure=f.sure) for f in result.faces]
        return Prediction(source=result.source, width=image.shape[1], height=image.shape[0], faces=faces, labels=list(pipe.labels),
                          ms=round(ms, 3))

    return _protect(app, access or Access(), Problem)


def _response_models():
    """The pydantic models of the answers (Face, Prediction, Health, Problem): made when an app is, since
    pydantic comes with the `api` extra."""
    from pydantic import BaseModel, Field

    class Face(BaseModel):
        box: list[int] = Field(description="x, y, width, height in image pixels")
        label: str
        probs: dict[str, float] = Field(description="label -> probability")
        score: float = Field(description="detector confidence")
        sure: bool = Field(description="the top probability reaches --min-confidence (default: the model's "
                                       "threshold)")

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

    return Face, Prediction, Health, Problem


def _docs_pages(app) -> None:
    """/docs and /redoc as FastAPI makes them, but passing the page's own ?token= on to /openapi.json."""
    from fastapi import Request
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    def schema_url(request) -> str:
        token = request.query_params.get("token")
        return "/openapi.json" + (f"?token={urllib.parse.quote(token, safe='')}" if token else "")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        return get_swagger_ui_html(openapi_url=schema_url(request), title="fer-edge - Swagger UI")

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request):
        return get_redoc_html(openapi_url=schema_url(request), title="fer-edge - ReDoc")


def _protect(app, access: Access, problem):
    """The token gate in front of everything (401 before the upload limit's 413), and the schema saying so:
    a bearer token (or ?token=) on every operation but the open ones, and their 401."""
    if access.token is None:
        return app
    app.add_middleware(TokenGate, access=access)  # added last: the outermost middleware
    schema = app.openapi()  # made once and kept by the app: what is changed here is what /openapi.json serves
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault("Problem", problem.model_json_schema())
    schema["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "the server's token"},
        "query": {"type": "apiKey", "in": "query", "name": "token", "description": "the same token, for a browser"}}
    unauthorized = {"description": "no token, or a wrong one", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path not in OPEN_PATHS:
                operation["security"] = [{"bearer": []}, {"query": []}]
                operation["responses"]["401"] = unauthorized
    return app
