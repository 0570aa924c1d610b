"""Browser preview (`--serve [HOST:]PORT`): the annotated stream as MJPEG and a page with live emotion bars.

    fer-edge --camera 0 --serve 8080                 # http://127.0.0.1:8080/ on the board itself
    fer-edge --camera 0 --serve 0.0.0.0:8080 --serve-token-file /etc/fer-edge/token   # http://pi:8080/?token=...

Paths: `/` the page, `/stream.mjpg` the annotated frames (multipart/x-mixed-replace), `/frame.jpg` the
newest one, `/state.json` the newest frame's faces, the fps and the frame count. The standard library's
threading HTTP server runs in a daemon thread; the frame loop only stores a reference to the newest frame
and result, and a frame is drawn and JPEG-encoded at most once, when a client asks for it. A bare port
binds to 127.0.0.1: other machines see the preview only when an address is given, and then every request
needs the token (runtime/serve/access.py: given, or made for the run; `?token=T` or `Authorization: Bearer T`,
the page passes its own on to its stream), unless --no-token says otherwise.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from fer_edge.runtime.serve.access import WWW_AUTHENTICATE, Access, base_url
from fer_edge.runtime.core.errors import FerEdgeError

log = logging.getLogger("fer_edge.runtime")

DEFAULT_HOST = "127.0.0.1"
JPEG_QUALITY = 80
MAX_STREAM_FPS = 30.0  # a client never gets frames faster than this, whatever the source gives
BOUNDARY = "ferframe"


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


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fer-edge preview</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{margin:0;font:14px system-ui,sans-serif;background:#16181d;color:#e8e8e8;display:flex;gap:16px;padding:12px}
 #view{flex:0 0 auto} #view img{display:block;max-width:70vw;background:#000}
 #side{flex:1 1 auto;min-width:220px} h1{font-size:16px;margin:0 0 8px} .face{margin:0 0 14px}
 .row{display:flex;align-items:center;gap:6px;margin:2px 0} .name{width:70px}
 .bar{height:12px;background:#3a3f4b;flex:1;position:relative} .fill{height:100%;background:#4fc36b}
 .top .fill{background:#ffb347} .unsure .fill{background:#888} #stat{color:#9aa}
</style></head>
<body><div id="view"><img id="stream" alt="annotated stream"></div>
<div id="side"><h1>fer-edge</h1><div id="stat">waiting for frames...</div><div id="faces"></div></div>
<script>
const q = new URLSearchParams(location.search), tok = q.get("token");
const withToken = p => tok ? p + "?token=" + encodeURIComponent(tok) : p;
const img = document.getElementById("stream");
let shown = 0;
img.onload = () => { shown += 1; document.body.dataset.imageFrames = shown; };
img.src = withToken("stream.mjpg");
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c])); }
async function poll() {
  try {
    const r = await fetch(withToken("state.json"), {cache: "no-store"});
    if (r.ok) {
      const s = await r.json();
      document.getElementById("stat").textContent =
        `frame ${s.frame} · ${s.fps.toFixed(1)} fps · ${s.faces.length} face(s)`;
      document.getElementById("faces").innerHTML = s.faces.map(f =>
        `<div class="face${f.sure ? "" : " unsure"}" data-track="${f.track}"><b>#${f.track} ${esc(f.label)}${f.sure ? "" : " ?"}</b>` +
        Object.entries(f.probs).map(([k, v]) =>
          `<div class="row${k === f.label ? " top" : ""}"><span class="name">${esc(k)}</span>` +
          `<span class="bar"><span class="fill" style="display:block;width:${(100 * v).toFixed(1)}%"></span></span>` +
          `<span>${v.toFixed(2)}</span></div>`).join("") + "</div>").join("");
      document.body.dataset.frames = s.frame;
    }
  } catch (e) { document.getElementById("stat").textContent = "disconnected"; }
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""


@dataclass(frozen=True)
class PreviewOptions:
    """Where the preview listens ([HOST:]PORT, --serve) and who may use it (default: anyone)."""
    bind: str
    access: Access = field(default_factory=Access)


class PreviewServer:
    """The HTTP server and the newest frame; `write`/`close` make it a sink of the pipeline."""

    def __init__(self, options: PreviewOptions):
        host, port = parse_bind(options.bind)
        self.access = options.access
        self._cond = threading.Condition()
        self._seq = 0  # frames written
        self._latest = None  # (frame, result)
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
            self._times = [t for t in self._times if now - t < 2.0] + [now]
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- what the handlers ask for ---------------------------------------------------------------

    def fps(self) -> float:
        t = self._times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def state(self) -> dict:
        with self._cond:
            latest, seq, fps = self._latest, self._seq, self.fps()
        result = latest[1] if latest else None
        return {"frame": result.frame if result else -1, "frames": seq, "fps": round(fps, 2),
                "faces": [f.to_dict() for f in result.faces] if result else []}

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
            return self._send(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
        if url.path == "/state.json":
            return self._send(HTTPStatus.OK, json.dumps(self.preview.state()).encode(), "application/json")
        if url.path == "/frame.jpg":
            _, data = self.preview.jpeg(timeout=5.0)
            if data is None:
                return self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain")
            return self._send(HTTPStatus.OK, data, "image/jpeg")
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
