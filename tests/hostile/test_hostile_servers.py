"""A hostile client against the HTTP API and the browser preview: a decompression bomb, a 2000x1 image,
a taken port, HEAD requests. The API cases need the [api] extra; the preview ones only the runtime."""
from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from faults import bomb, one_line  # noqa: F401 (bomb: a fixture)
from fer_edge.runtime import images
from fer_edge.runtime.preview import PreviewOptions, PreviewServer
from fer_edge.runtime.results import FrameResult
from fer_edge.runtime.sources import Frame

TFLITE = Path(__file__).parents[1] / "assets" / "tiny_fer.tflite"


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("fastapi", reason="the [api] extra is not installed (pip install 'fer-edge[api]')")
    pytest.importorskip("multipart", reason="python-multipart is not installed (pip install 'fer-edge[api]')")
    from fastapi.testclient import TestClient

    from fer_edge.runtime.api import create_app
    from fer_edge.runtime.pipeline import PipelineOptions

    with TestClient(create_app(PipelineOptions(model=TFLITE, threads=1))) as c:
        yield c


def test_the_bomb_is_a_400_from_its_header(client, bomb, monkeypatch):
    def no_decode(*_):
        raise AssertionError("the bomb reached the decoder")

    monkeypatch.setattr(images.cv2, "imdecode", no_decode)
    r = client.post("/predict", files={"file": ("bomb.png", bomb.read_bytes(), "image/png")})
    assert r.status_code == 400
    assert "30000x30000 pixels, over the limit" in r.json()["detail"] and "before decoding" in r.json()["detail"]


@pytest.mark.parametrize("size", [(2000, 1), (1, 2000), (3, 3)])
def test_a_sliver_is_an_image_without_faces(client, size):
    png = cv2.imencode(".png", np.full(size[::-1], 90, np.uint8))[1].tobytes()
    r = client.post("/predict", files={"file": ("s.png", png, "image/png")})
    assert r.status_code == 200 and r.json()["faces"] == [] and (r.json()["width"], r.json()["height"]) == size


@pytest.mark.parametrize("fmt", [".png", ".jpg", ".bmp", ".webp", ".tif", ".pgm"])
def test_the_header_guard_reads_every_format_the_runtime_takes(fmt):
    image = np.zeros((37, 53), np.uint8)
    data = cv2.imencode(fmt, image)[1].tobytes()
    assert images.image_size(data) == (53, 37)


def test_serve_api_on_a_taken_port_is_one_line(capfd):
    pytest.importorskip("uvicorn", reason="the [api] extra is not installed")
    from fer_edge.runtime.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve-api", "--port", str(port), "--model", str(TFLITE)]) == 2
    err = capfd.readouterr().err
    assert "API on" not in err
    one_line(err, f"--port {port}: cannot listen there")


def test_the_preview_answers_head_like_get():
    preview = PreviewServer(PreviewOptions("127.0.0.1:0"))
    try:
        preview.write(Frame(np.zeros((48, 64, 3), np.uint8), 0, 0.0), FrameResult(0, 0.0, []))
        for path, ctype in (("/", "text/html"), ("/frame.jpg", "image/jpeg"), ("/stream.mjpg", "multipart/")):
            req = urllib.request.Request(f"http://127.0.0.1:{preview.port}{path}", method="HEAD")
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith(ctype) and r.read() == b""
    finally:
        preview.close()
