"""A hostile client against the HTTP API and the browser preview: a decompression bomb, a 2000x1 image,
a taken port, HEAD requests, and requests without the token, with a wrong one, or with a forged header
(runtime/serve/access.py). The API cases need the [api] extra; the preview ones only the runtime."""
from __future__ import annotations

import logging
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from faults import bomb, grey_image, one_line, start, terminate, wait_for_stderr_file  # noqa: F401 (bomb: a fixture)
from fer_edge.runtime.media import images
from fer_edge.runtime.serve.access import Access, FailureLog, access_for
from fer_edge.runtime.serve.preview import PreviewOptions, PreviewServer
from fer_edge.runtime.core.results import FrameResult
from fer_edge.runtime.media.sources import Frame

TFLITE = Path(__file__).parents[1] / "assets" / "tiny_fer.tflite"


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("fastapi", reason="the [api] extra is not installed (pip install 'fer-edge[api]')")
    pytest.importorskip("multipart", reason="python-multipart is not installed (pip install 'fer-edge[api]')")
    from fastapi.testclient import TestClient

    from fer_edge.runtime.serve.api import create_app
    from fer_edge.runtime.recognize.pipeline import PipelineOptions

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
        preview.finish(True)


# -- the token (runtime/serve/access.py): both servers, both forms, wrong, missing, empty, --no-token ---------------

TOKEN = "t0ken-for-the-tests"
GENERATED_URL = re.compile(r"open (http://\S+\?token=([A-Za-z0-9_-]+))")


def _png_bytes() -> bytes:
    return cv2.imencode(".png", np.full((40, 40), 90, np.uint8))[1].tobytes()


@pytest.fixture(scope="module")
def guarded():
    """The API with a token, in-process."""
    pytest.importorskip("fastapi", reason="the [api] extra is not installed (pip install 'fer-edge[api]')")
    pytest.importorskip("multipart", reason="python-multipart is not installed (pip install 'fer-edge[api]')")
    from fastapi.testclient import TestClient

    from fer_edge.runtime.serve.api import create_app
    from fer_edge.runtime.recognize.pipeline import PipelineOptions

    app = create_app(PipelineOptions(model=TFLITE, threads=1), max_upload_bytes=100_000,
                     access=Access(token=TOKEN))
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("how", [{}, {"headers": {"Authorization": "Bearer wrong"}}, {"params": {"token": "wrong"}},
                                 {"params": {"token": TOKEN[:-1]}}, {"headers": {"Authorization": f"Basic {TOKEN}"}},
                                 {"headers": {"Authorization": "Bearer"}},
                                 # the header wins: a right ?token= does not rescue a wrong header
                                 {"headers": {"Authorization": "Bearer wrong"}, "params": {"token": TOKEN}}])
def test_the_api_refuses_a_missing_or_wrong_token_with_a_bare_401(guarded, how):
    for method, path in (("post", "/predict"), ("get", "/openapi.json"), ("get", "/docs"), ("get", "/redoc"),
                         ("get", "/nowhere")):
        r = guarded.request(method.upper(), path, files={"file": ("x.png", _png_bytes(), "image/png")}
                            if method == "post" else None, **how)
        assert r.status_code == 401, (path, how, r.text)
        assert r.json() == {"detail": "unauthorized"} and r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("how", [{"headers": {"Authorization": f"Bearer {TOKEN}"}},
                                 {"headers": {"authorization": f"bearer {TOKEN}"}}, {"params": {"token": TOKEN}}])
def test_the_api_takes_the_token_as_a_bearer_header_or_in_the_query(guarded, how):
    r = guarded.post("/predict", files={"file": ("x.png", _png_bytes(), "image/png")}, **how)
    assert r.status_code == 200 and r.json()["faces"] == []
    schema = guarded.get("/openapi.json", **how).json()
    assert schema["paths"]["/predict"]["post"]["security"] and "401" in schema["paths"]["/predict"]["post"]["responses"]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert guarded.get("/docs", **how).status_code == 200


def test_health_stays_open_and_the_docs_pass_their_token_on(guarded):
    assert guarded.get("/health").status_code == 200
    page = guarded.get("/docs", params={"token": TOKEN}).text
    assert f"/openapi.json?token={TOKEN}" in page  # the browser's page loads the schema it may read


def test_no_token_is_a_401_before_the_upload_is_read(guarded):
    r = guarded.post("/predict", files={"file": ("big.png", b"\0" * 300_000, "image/png")})
    assert r.status_code == 401  # not 413: a stranger learns nothing, not even the limit


def test_refusals_are_logged_with_the_address_and_rate_limited(guarded, caplog):
    caplog.set_level(logging.WARNING, logger="fer_edge")
    app_access = next(m.kwargs["access"] for m in guarded.app.user_middleware if "access" in m.kwargs)
    app_access.failures._start = None  # a fresh window, whatever the tests before did
    for _ in range(12):
        assert guarded.get("/openapi.json", params={"token": "nope"}).status_code == 401
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 5 and all("from testclient" in line and "'/openapi.json'" in line for line in lines)
    assert not any("nope" in line for line in lines)  # the wrong token itself is never logged


def test_the_failure_log_reports_what_it_left_out():
    now = [0.0]
    failures = FailureLog(burst=2, window=10.0, clock=lambda: now[0])
    assert [failures("API", "10.0.0.9", "/predict") for _ in range(5)] == [True, True, False, False, False]
    now[0] = 10.0
    assert failures("API", "10.0.0.9", "/predict")
    assert failures._left_out == 0


def test_loopback_servers_stay_open_and_other_addresses_get_a_token(monkeypatch):
    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        access = access_for(host)
        assert access.token is None and not access.generated and access.allows("", None)
    tokens = set()
    for host in ("0.0.0.0", "::", "192.168.1.20", "board.local"):
        access = access_for(host)
        assert access.generated and len(access.token) >= 32 and not access.allows("", None)
        assert access.allows(f"token={access.token}", None) and TOKEN not in repr(access)
        tokens.add(access.token)
    assert len(tokens) == 4  # random each time
    assert access_for("0.0.0.0", token=TOKEN).token == TOKEN and not access_for("0.0.0.0", token=TOKEN).generated


def test_an_empty_or_conflicting_token_stops_serve_api_with_one_line(capfd, tmp_path, monkeypatch):
    pytest.importorskip("uvicorn", reason="the [api] extra is not installed")
    from fer_edge.runtime.cli import main

    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    empty = tmp_path / "token"
    empty.write_text("\n")
    port = _free_port()
    base = ["serve-api", "--host", "0.0.0.0", "--port", str(port), "--model", str(TFLITE)]
    for extra, words in ((["--serve-token", ""], "--serve-token is empty"),
                         (["--serve-token-file", str(empty)], f"--serve-token-file {empty} is empty"),
                         (["--serve-token-file", str(tmp_path / "none")], "cannot read it"),
                         (["--no-token", "--serve-token", TOKEN], "--no-token and --serve-token both given")):
        assert main(base + extra) == 2
        one_line(capfd.readouterr().err, *words.split(" is ")[:1])
    monkeypatch.setenv("FER_EDGE_SERVE_TOKEN", " ")
    assert main(base) == 2
    one_line(capfd.readouterr().err, "$FER_EDGE_SERVE_TOKEN is empty")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(url: str, data: bytes | None = None, headers=None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(100_000) if "multipart" not in r.headers["Content-Type"] else r.read(200), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def _multipart(data: bytes) -> tuple[bytes, dict]:
    body = (b'--xx\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--xx--\r\n")
    return body, {"Content-Type": "multipart/form-data; boundary=xx"}


@pytest.mark.slow
def test_serve_api_beyond_loopback_makes_a_token_and_prints_its_url_once(tmp_path, monkeypatch):
    """The acceptance case as a user meets it: `serve-api --host 0.0.0.0` with no token option."""
    pytest.importorskip("uvicorn", reason="the [api] extra is not installed")
    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    port, err = _free_port(), tmp_path / "stderr"
    with open(err, "w") as f:
        proc = start(["serve-api", "--host", "0.0.0.0", "--port", str(port), "--model", str(TFLITE),
                      "--threads", "1"], stderr=f)
    try:
        wait_for_stderr_file(err, "?token=")
        url, token = GENERATED_URL.search(err.read_text()).groups()
        assert url.endswith(f":{port}/docs?token={token}")
        local = f"http://127.0.0.1:{port}"
        body, headers = _multipart(_png_bytes())
        assert _ask(f"{local}/predict", body, headers)[0] == 401
        assert _ask(f"{local}/predict", body, {**headers, "Authorization": "Bearer nope"})[0] == 401
        status, answer, _ = _ask(f"{local}/predict", body, {**headers, "Authorization": f"Bearer {token}"})
        assert status == 200 and b'"faces":[]' in answer
        assert _ask(f"{local}/predict?token={token}", body, headers)[0] == 200
        assert _ask(f"{local}/health")[0] == 200
        assert _ask(f"{local}/openapi.json")[0] == 401 and _ask(f"{local}/openapi.json?token={token}")[0] == 200
    finally:
        assert terminate(proc)[0] in (0, 130)
    text = err.read_text()
    assert text.count(token) == 1, text  # printed once, never logged again
    assert "refused '/predict' from 127.0.0.1" in text


def test_the_preview_needs_its_token_for_the_page_and_the_stream():
    preview = PreviewServer(PreviewOptions("127.0.0.1:0", Access(token=TOKEN)))
    try:
        preview.write(Frame(np.zeros((48, 64, 3), np.uint8), 0, 0.0), FrameResult(0, 0.0, []))
        base = f"http://127.0.0.1:{preview.port}"
        for path in ("/", "/stream.mjpg", "/frame.jpg", "/state.json"):
            refused = [_ask(base + path), _ask(f"{base}{path}?token=wrong"),
                       _ask(base + path, headers={"Authorization": "Bearer wrong"}),
                       _ask(f"{base}{path}?token={TOKEN}", headers={"Authorization": "Bearer wrong"})]
            assert {(status, body) for status, body, _ in refused} == {(401, b"unauthorized\n")}, path
            assert all(h["WWW-Authenticate"].startswith("Bearer") for *_, h in refused)
            for headers, query in (({}, f"?token={TOKEN}"), ({"Authorization": f"Bearer {TOKEN}"}, "")):
                status, body, h = _ask(base + path + query, headers=headers)
                assert status == 200 and body, (path, headers, query)
        assert b"--ferframe" in _ask(f"{base}/stream.mjpg?token={TOKEN}")[1]
    finally:
        preview.finish(True)


def test_the_preview_beyond_loopback_makes_a_token_and_prints_its_url_once(capfd, monkeypatch):
    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    preview = PreviewServer(PreviewOptions("0.0.0.0:0", access_for("0.0.0.0")))
    try:
        preview.write(Frame(np.zeros((48, 64, 3), np.uint8), 0, 0.0), FrameResult(0, 0.0, []))
        err = capfd.readouterr().err
        url, token = GENERATED_URL.search(err).groups()
        assert err.count(token) == 1 and url.endswith(f":{preview.port}/?token={token}")
        base = f"http://127.0.0.1:{preview.port}"
        assert _ask(base + "/")[0] == 401 and _ask(base + "/stream.mjpg")[0] == 401
        assert _ask(f"{base}/?token={token}")[0] == 200 and _ask(f"{base}/stream.mjpg?token={token}")[0] == 200
    finally:
        preview.finish(True)


def test_the_cli_preview_prints_a_made_token_once_and_none_on_loopback(capfd, tmp_path, monkeypatch):
    from fer_edge.runtime.cli import main

    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    photo = grey_image(tmp_path / "photo.png")
    assert main(["--image", str(photo), "--model", str(TFLITE), "--serve", "0.0.0.0:0"]) == 0
    err = capfd.readouterr().err
    assert len(GENERATED_URL.findall(err)) == 1 and err.count(GENERATED_URL.search(err).group(2)) == 1
    assert main(["--image", str(photo), "--model", str(TFLITE), "--serve", "127.0.0.1:0"]) == 0
    err = capfd.readouterr().err
    assert "token" not in err and "preview: http://127.0.0.1:" in err  # loopback: open and quiet, as before
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    assert main(["--image", str(photo), "--model", str(TFLITE), "--serve", "0.0.0.0:0",
                 "--serve-token-file", str(secret)]) == 0
    err = capfd.readouterr().err
    assert "(token required)" in err and TOKEN not in err and "made one" not in err


def test_no_token_serves_open_beyond_loopback_and_warns_at_every_start(caplog, monkeypatch):
    monkeypatch.setenv("FER_EDGE_SERVE_TOKEN", TOKEN)  # a token in the environment and --no-token: which one?
    with pytest.raises(Exception, match=r"--no-token and \$FER_EDGE_SERVE_TOKEN both given"):
        access_for("0.0.0.0", no_token=True)
    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN")
    caplog.set_level(logging.WARNING, logger="fer_edge")
    for _ in range(2):
        preview = PreviewServer(PreviewOptions("0.0.0.0:0", access_for("0.0.0.0", no_token=True)))
        try:
            assert _ask(f"http://127.0.0.1:{preview.port}/state.json")[0] == 200
        finally:
            preview.finish(True)
    warnings = [r.getMessage() for r in caplog.records if "--no-token" in r.getMessage()]
    assert len(warnings) == 2 and all("answers anyone who can reach it, without a token" in w for w in warnings)


def test_the_token_keys_of_a_config_file_work_for_both_servers(tmp_path, capfd, monkeypatch):
    from fer_edge.runtime.cli_serve import api_parser
    from fer_edge.runtime.cli import main
    from fer_edge.runtime.cli_args import access_options
    from fer_edge.runtime.config import with_config

    monkeypatch.delenv("FER_EDGE_SERVE_TOKEN", raising=False)
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'host = "0.0.0.0"\nserve_token_file = "{secret}"\n')
    p = api_parser()
    assert access_options(p.parse_args(with_config(p, ["--config", str(cfg)])), "0.0.0.0").token == TOKEN
    cfg.write_text('host = "0.0.0.0"\nno_token = true\n')
    access = access_options(p.parse_args(with_config(p, ["--config", str(cfg)])), "0.0.0.0")
    assert access.token is None and access.no_token
    cfg.write_text(f'serve = "0.0.0.0:0"\nserve_token_file = "{secret}"\nmodel = "{TFLITE}"\n')
    assert main(["--config", str(cfg), "--image", str(grey_image(tmp_path / "p.png"))]) == 0
    err = capfd.readouterr().err
    assert "(token required)" in err and "made one" not in err


def test_the_deploy_files_and_the_security_page_agree():
    root = Path(__file__).parents[2]
    install = (root / "deploy" / "raspberry-pi" / "install.sh").read_text()
    assert '"$CONFIG_DIR/token"' in install and "secrets.token_urlsafe" in install and "umask 0137" in install
    for config in ("config.example.toml", "jetson/config.toml"):
        assert 'serve_token_file = "/etc/fer-edge/token"' in (root / "deploy" / config).read_text()
    assert "serve-token-file /run/secrets/fer-edge-token" in (root / "deploy" / "docker" / "README.md").read_text()
    # the board commands the page shows in console fences: every flag exists (their parsers read them)
    from fer_edge.runtime.cli_serve import api_parser
    from fer_edge.runtime.cli import run_parser

    page = (root / "docs" / "security.md").read_text()
    shown = re.findall(r"^\$ fer-edge (.+)$", page, re.M)
    assert len(shown) >= 3
    for line in shown:
        words = line.split()
        parser, args = (api_parser(), words[1:]) if words[0] == "serve-api" else (run_parser(), words)
        parser.parse_args(args)


def test_an_api_made_without_access_stays_open_as_before(client):
    """create_app without `access` (serve-api on loopback without a token option): nothing asks for a token."""
    assert client.get("/openapi.json").status_code == 200
    assert "security" not in client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert client.get("/docs").status_code == 200 and "'/openapi.json'" in client.get("/docs").text
    r = client.post("/predict", files={"file": ("x.png", _png_bytes(), "image/png")})
    assert r.status_code == 200
