"""HTTP API (fer-edge serve-api): /predict, /health, the upload limit, 4xx for bad input, and a
schemathesis run against the app's own OpenAPI schema that must find no server error.

Runs in-process against the ASGI app (no socket), protected by a token as beyond loopback (every request
here carries it, and each fuzzed request is sent once more without it, which must be a 401); the model is the
tiny committed one.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [api] extra is not installed (pip install 'fer-edge[api]')")
pytest.importorskip("multipart", reason="python-multipart is not installed (pip install 'fer-edge[api]')")
from fastapi.testclient import TestClient  # noqa: E402

from fer_edge.runtime.serve.access import Access  # noqa: E402
from fer_edge.runtime.serve.api import create_app  # noqa: E402
from fer_edge.runtime.recognize.pipeline import PipelineOptions  # noqa: E402

TFLITE = Path(__file__).parent / "assets" / "tiny_fer.tflite"
LIMIT = 300_000  # bytes: small so the 413 path is cheap to reach
FUZZ_EXAMPLES = 60  # per operation; keeps the schemathesis run well under a minute on 2 cores

TOKEN = "api-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP = create_app(PipelineOptions(model=TFLITE, threads=1), max_upload_bytes=LIMIT, access=Access(token=TOKEN))


@pytest.fixture(scope="module")
def client():
    with TestClient(APP, headers=AUTH) as c:
        yield c


def _png(image) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_health_and_schema(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and "happy" in r.json()["labels"]
    assert r.json()["detector"] == "yunet" and r.json()["framing"] == "fer2013"  # the defaults
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/health"} <= set(paths) and {"400", "413"} <= set(paths["/predict"]["post"]["responses"])


def test_predict_a_photo(client, samples_dir):
    data = (samples_dir / "fer_justin.jpg").read_bytes()
    r = client.post("/predict", files={"file": ("justin.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["faces"]) == 1 and doc["width"] > 0 and doc["source"] == "justin.jpg"
    face = doc["faces"][0]
    assert set(face["probs"]) == set(doc["labels"]) and face["label"] == max(face["probs"], key=face["probs"].get)


@pytest.mark.parametrize("image", [np.full((60, 80), 127, np.uint8), np.zeros((40, 40, 4), np.uint8),
                                   np.zeros((1, 1, 3), np.uint8)])
def test_no_face_is_an_empty_list(client, image):
    r = client.post("/predict", files={"file": ("x.png", _png(image), "image/png")})
    assert r.status_code == 200 and r.json()["faces"] == []


@pytest.mark.parametrize("data, words", [(b"", "empty"), (b"not an image at all", "not a decodable image"),
                                         (b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "not a decodable image")])
def test_bad_uploads_are_400_with_a_message(client, data, words):
    r = client.post("/predict", files={"file": ("x.png", data, "image/png")})
    assert r.status_code == 400 and words in r.json()["detail"]


def test_missing_file_is_422(client):
    assert client.post("/predict").status_code == 422
    assert client.post("/predict", data={"other": "x"}).status_code == 422


def test_upload_limit_is_413(client):
    big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)  # ~480 kB as PNG
    r = client.post("/predict", files={"file": ("big.png", _png(big), "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while it streams
        for _ in range(20):
            yield b"\0" * 32768

    r = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


@pytest.mark.slow
def test_serve_api_subcommand_on_loopback(tmp_path):
    """`fer-edge serve-api` as a user starts it: uvicorn on a free loopback port, config file included."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("uvicorn", reason="the [api] extra is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "api.toml"
    cfg.write_text(f'model = "{TFLITE}"\nthreads = 1\nport = {port}\nmax_upload_mb = 0.5\n')
    proc = subprocess.Popen([sys.executable, "-m", "fer_edge.runtime.cli", "serve-api", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2))
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "serve-api did not answer in 60 s"
                time.sleep(0.2)
        assert health["model"] == TFLITE.name
        # loopback without a token option: open, as before the token (no header, no ?token=)
        body = (b'--xx\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
                + _png(np.zeros((8, 8), np.uint8)) + b"\r\n--xx--\r\n")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                     headers={"Content-Type": "multipart/form-data; boundary=xx"})
        assert json.load(urllib.request.urlopen(req, timeout=30))["faces"] == []
    finally:
        proc.terminate()
        proc.wait(20)
    assert "token" not in proc.stderr.read()


def test_min_confidence_fills_sure(samples_dir):
    """--min-confidence reaches the answers: every face sure at 0, none at 1 (the top probability of the tiny
    model's faces is below 1)."""
    data = (samples_dir / "fer_justin.jpg").read_bytes()
    sure = []
    for p in (0.0, 1.0):
        app = create_app(PipelineOptions(model=TFLITE, threads=1, min_confidence=p))
        with TestClient(app) as c:
            faces = c.post("/predict", files={"file": ("j.jpg", data, "image/jpeg")}).json()["faces"]
        sure.append([f["sure"] for f in faces])
    assert sure == [[True], [False]], sure


SLOW_PREDICT = """
import sys, time
from pathlib import Path
from fer_edge.runtime.recognize.pipeline import Pipeline
photo = Pipeline.process_photo
def slow(self, *args, **kwargs):  # the test's hook: say the request is in, then take longer than the last resort
    Path(sys.argv[1]).write_text("in")
    time.sleep(4.5)
    return photo(self, *args, **kwargs)
Pipeline.process_photo = slow
from fer_edge.launch import fer_edge
fer_edge(sys.argv[2:])
"""


@pytest.mark.slow
def test_sigterm_lets_a_slow_predict_answer_then_exits_0(tmp_path, samples_dir):
    """serve-api is a service: SIGTERM while a /predict is in flight (inside the classifier, held 4.5 s, longer
    than the last resort's 3 s) lets it answer, then the command exits 0."""
    import signal
    import subprocess
    import sys
    import threading
    import time
    import urllib.request

    pytest.importorskip("uvicorn", reason="the [api] extra is not installed")
    from mqtt_broker import free_port, wait_for

    port, mark = free_port(), tmp_path / "in-flight"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PREDICT, str(mark), "serve-api", "--model", str(TFLITE),
                             "--threads", "1", "--port", str(port)], stderr=subprocess.PIPE, text=True)
    answer = {}

    def post():
        body = (b'--xx\r\nContent-Disposition: form-data; name="file"; filename="j.jpg"\r\n\r\n'
                + (samples_dir / "fer_justin.jpg").read_bytes() + b"\r\n--xx--\r\n")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                     headers={"Content-Type": "multipart/form-data; boundary=xx"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answer["status"], answer["doc"] = r.status, r.read()

    try:
        def up() -> bool:
            assert proc.poll() is None, proc.stderr.read()
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
            except OSError:
                return False

        wait_for(up, 60, "serve-api to answer /health")
        client = threading.Thread(target=post)
        client.start()
        wait_for(mark.exists, 30, "the request to reach the classifier")
        proc.send_signal(signal.SIGTERM)
        client.join(60)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answer.get("status") == 200 and b'"faces":[{' in answer["doc"], (answer, err)
    assert proc.returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err, err


schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (the [dev] extra)")
from hypothesis import HealthCheck, settings  # noqa: E402

SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, headers=AUTH)  # the schema is protected too
SCHEMA.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
STATUSES: Counter = Counter()  # status codes the fuzzer saw, printed at the end of the module (pytest -s)


@SCHEMA.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzz_the_api_with_its_own_schema(case):
    # every default check (no 5xx, status codes, content types and bodies as the schema says, invalid
    # requests rejected) but positive_data_acceptance: the schema can only say `file` is binary, so any
    # bytes are "valid" to it, and a 400 for bytes that are no image is the documented answer
    response = case.call_and_validate(headers=AUTH, excluded_checks=[schemathesis.checks.positive_data_acceptance])
    STATUSES[f"{case.method} {case.path} {response.status_code}"] += 1
    assert response.status_code < 500
    if case.path != "/health":  # the same request without the token: refused before the app sees it
        STATUSES[f"{case.method} {case.path} without token {case.call().status_code}"] += 1


def test_fuzz_report():
    print(f"schemathesis: {sum(STATUSES.values())} requests, status codes {dict(sorted(STATUSES.items()))}")
    assert not [k for k in STATUSES if k.rsplit(" ", 1)[1].startswith("5")]
    assert {k.rsplit(" ", 1)[1] for k in STATUSES if "without token" in k} == {"401"}
