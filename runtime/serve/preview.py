"""Browser preview (`--serve [HOST:]PORT`): the annotated frames, and a page with each face's emotion bars,
its chart over the last minute and the list of faces in view.

    fer-edge --camera 0 --serve 8080                 # http://127.0.0.1:8080/ on the board itself
    fer-edge --camera 0 --serve 0.0.0.0:8080 --serve-token-file /etc/fer-edge/token   # http://pi:8080/?token=...

Paths: `/` the page (preview.html beside this file, drawn in the browser with no file from elsewhere),
`/frame.jpg` the newest annotated frame (`?after=SEQ` waits for one newer than SEQ; the `X-Frame-Seq` header
names it), `/state.json` the newest frame's faces, fps and counts (`?seq=SEQ`: that frame's, while it is among
the last few; `&since=SEQ`: with the charts' points of the frames after SEQ), `/stream.mjpg` the
annotated frames as MJPEG for other viewers. The page asks for a frame, then for that frame's state, so the
picture, the bars and the chart's newest point show one frame's values. The standard library's threading HTTP
server runs in a daemon thread; the frame loop only stores references to the newest frames and results (and
one in HISTORY_STEP_S seconds for the charts), and a frame is drawn and JPEG-encoded at most once, when a
client asks for it. A bare port binds to 127.0.0.1: other machines see the preview only when an address is
given, and then every request needs the token (runtime/serve/access.py: given, or made for the run;
`?token=T` or `Authorization: Bearer T`, the page passes its own on), unless --no-token says otherwise.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import cv2

from fer_edge.runtime.serve.access import WWW_AUTHENTICATE, Access, base_url
from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.media.sinks import Sink

log = logging.getLogger("fer_edge.runtime")

DEFAULT_HOST = "127.0.0.1"
JPEG_QUALITY = 80
MAX_STREAM_FPS = 30.0  # a client never gets frames faster than this, whatever the source gives
BOUNDARY = "ferframe"
HISTORY_S = 60.0  # the charts' window
HISTORY_STEP_S = 0.1  # one chart point per face at most this often (600 a minute, whatever the fps)
RECENT = 256  # frames whose state /state.json?seq= answers (the page asks right after the frame; results only)
PAGE_STEP_MS = 1000.0 / MAX_STREAM_FPS  # the page asks for frames at most this often


def parse_bind(spec: str) -> tuple[str, int]:
    """'8080' -> ('127.0.0.1', 8080); 'HOST:PORT'; '[::1]:8080'."""
    spec = str(spec).strip()
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = DEFAULT_HOST, spec
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise FerEdgeError(f"--serve: expected [HOST:]PORT, e.g. 127.0.0.1:8080, found {spec!r}")
    return host, int(port)


@dataclass(frozen=True)
class PreviewOptions:
    """Where the preview listens ([HOST:]PORT, --serve) and who may use it (default: anyone)."""
    bind: str
    access: Access = field(default_factory=Access)


@lru_cache(maxsize=1)
def page() -> bytes:
    """preview.html with the overlay's colours (RGB), so the chart and the list match the drawn frame."""
    from fer_edge.runtime.media.drawing import COLOURS, LABEL_COLOURS, UNSURE

    html = resources.files(__package__).joinpath("preview.html").read_text("utf-8")
    values = {"__LABEL_RGB__": [c[::-1] for c in LABEL_COLOURS], "__TRACK_RGB__": [c[::-1] for c in COLOURS],
              "__UNSURE_RGB__": UNSURE[::-1],
              "__WINDOW_S__": int(HISTORY_S), "__MIN_STEP_MS__": round(PAGE_STEP_MS)}
    for key, value in values.items():
        html = html.replace(key, json.dumps(value))
    return html.encode()


def _point(t: float, seq: int, result) -> dict:
    return {"t": round(t, 3), "seq": seq, "faces": [f.to_dict() for f in result.faces]}


class PreviewServer(Sink):
    """The HTTP server and the newest frame; `write`/`close` make it a sink of the pipeline."""

    def __init__(self, options: PreviewOptions):
        host, port = parse_bind(options.bind)
        self.access = options.access
        self._cond = threading.Condition()
        self._seq = 0  # frames written
        self._latest = None  # (frame, result)
        self._t0 = time.monotonic()
        self.run = secrets.token_hex(4)  # a page that outlives a restart sees a new run and starts its charts anew
        self._recent: deque = deque(maxlen=RECENT)  # (seq, t, result) of the last frames
        self._history: deque = deque()  # (seq, t, result), one per HISTORY_STEP_S, the last HISTORY_S seconds
        self._jpeg = (-1, b"")  # (seq, bytes) of the last encoded frame
        self._times: list[float] = []
        self.closed = False
        handler = type("Handler", (_Handler,), {"preview": self})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise FerEdgeError(f"--serve {host}:{port}: cannot listen there ({exc.strerror})") from None
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fer-edge-preview", daemon=True)
        self._thread.start()
        where = base_url(host, self.port) + "/"
        log.info("preview: %s%s", where, " (token required)" if self.access.token else "")
        self.access.announce("preview", where)

    # -- sink ------------------------------------------------------------------------------------

    def write(self, frame, result) -> None:
        now = time.monotonic()
        with self._cond:
            self._latest = (frame, result)
            self._seq += 1
            self._remember(self._seq, now - self._t0, result)
            self._times = [t for t in self._times if now - t < 2.0] + [now]
            self._cond.notify_all()

    def finish(self, commit: bool = True) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- what the handlers ask for ---------------------------------------------------------------

    def fps(self) -> float:
        t = self._times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def _remember(self, seq: int, t: float, result) -> None:
        """References only (called in the frame loop, under the lock): the dicts are made when asked for."""
        self._recent.append((seq, t, result))
        if not self._history or t - self._history[-1][1] >= HISTORY_STEP_S:
            self._history.append((seq, t, result))
        while self._history and t - self._history[0][1] > HISTORY_S:
            self._history.popleft()

    def state(self, seq: int | None = None, since: int | None = None) -> dict | None:
        """The newest frame's state, or frame `seq`'s (None once it left the last RECENT frames); with `since`
        (a frame's seq), the chart points of the frames after it up to this one, this one's own the last."""
        with self._cond:
            frames, fps = self._seq, self.fps()
            recent = list(self._recent)
            history = list(self._history) if since is not None else []
        entry = recent[-1] if recent and seq is None else next((e for e in recent if e[0] == seq), None)
        if entry is None:
            return None if seq is not None else {"run": self.run, "seq": 0, "frame": -1, "t": 0.0,
                                                 "frames": frames, "fps": round(fps, 2), "in_view": False, "faces": []}
        n, t, result = entry
        state = {"run": self.run, "seq": n, "frame": result.frame, "t": round(t, 3), "frames": frames,
                 "fps": round(fps, 2), "in_view": result.in_view, "faces": [f.to_dict() for f in result.faces]}
        if since is not None:
            state["history"] = [_point(pt, ps, r) for ps, pt, r in history if since < ps < n]
            state["history"].append({"t": state["t"], "seq": n, "faces": state["faces"]})
        return state

    def jpeg(self, after: int = -1, timeout: float = 5.0) -> tuple[int, bytes | None]:
        """The newest annotated frame as JPEG once there is one newer than `after` (None: closed or timeout)."""
        from fer_edge.runtime.media.drawing import annotated

        with self._cond:
            if not self._cond.wait_for(lambda: self.closed or self._seq > after, timeout) or self.closed:
                return after, None
            seq, (frame, result) = self._seq, self._latest
            if self._jpeg[0] == seq:
                return self._jpeg
        # the frame's shared drawing: drawn once whether --record, the window or the preview asks first
        ok, buf = cv2.imencode(".jpg", annotated(frame, result), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return seq, None
        with self._cond:
            if seq > self._jpeg[0]:
                self._jpeg = (seq, buf.tobytes())
        return seq, buf.tobytes()


def _number(args: dict, key: str, kind):
    """A query parameter as `kind`, None when absent; ValueError with the one line a client needs."""
    if key not in args:
        return None
    try:
        return kind(args[key][0])
    except ValueError:
        raise ValueError(f"{key}: expected a number, found {args[key][0]!r}") from None


class _Handler(BaseHTTPRequestHandler):
    preview: PreviewServer
    server_version = "fer-edge"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # requests are not worth a log line each on a board
        log.debug("preview: %s " + fmt, self.client_address[0], *args)

    def _send(self, status: int, body: bytes, ctype: str, headers=()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self.preview.closed:  # the run is over: no keep-alive connection outlives it
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):  # what GET would answer, without the body
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if not self.preview.access.allows(url.query, self.headers.get("Authorization")):
            self.preview.access.refused("preview", self.client_address[0], url.path)
            return self._send(HTTPStatus.UNAUTHORIZED, b"unauthorized\n", "text/plain", [WWW_AUTHENTICATE])
        if url.path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, page(), "text/html; charset=utf-8")
        args = urllib.parse.parse_qs(url.query)
        try:
            seq, since, after = (_number(args, k, kind) for k, kind in (("seq", int), ("since", int), ("after", int)))
        except ValueError as exc:
            return self._send(HTTPStatus.BAD_REQUEST, f"{exc}\n".encode(), "text/plain")
        if url.path == "/state.json":
            state = self.preview.state(seq, since)
            if state is None:
                return self._send(HTTPStatus.NOT_FOUND, f"frame {seq} is no longer kept\n".encode(), "text/plain")
            return self._send(HTTPStatus.OK, json.dumps(state).encode(), "application/json")
        if url.path == "/frame.jpg":
            n, data = self.preview.jpeg(after=-1 if after is None else after, timeout=5.0)
            if data is None:
                return self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no new frame yet\n", "text/plain")
            return self._send(HTTPStatus.OK, data, "image/jpeg", [("X-Frame-Seq", str(n))])
        if url.path == "/stream.mjpg":
            return self._stream()
        return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _stream(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command == "HEAD":
            return
        seq, last = -1, 0.0
        try:
            while True:
                seq, data = self.preview.jpeg(after=seq, timeout=30.0)
                if data is None:
                    if self.preview.closed:
                        return
                    continue
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                                 .encode() + data + b"\r\n")
                self.wfile.flush()
                wait = 1.0 / MAX_STREAM_FPS - (time.monotonic() - last)
                if wait > 0:
                    time.sleep(wait)
                last = time.monotonic()
        except (BrokenPipeError, ConnectionResetError):
            return  # the browser went away
