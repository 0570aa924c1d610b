"""Nothing secret leaves in a file, a page, a message or a log line (issue 44): one run with a password in its
MQTT URL and a preview token on its command line writes every output there is, and none of them holds either."""
from __future__ import annotations

import html
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fer_edge.runtime.core.redact import redact, redact_argv, redact_doc
from mqtt_broker import Subscriber, free_port, wait_for

TFLITE = Path(__file__).parent / "assets" / "tiny_fer.tflite"
PASSWORD, TOKEN = "PlantedPassw0rd", "PlantedToken-0123456789abcdef"


@pytest.mark.parametrize("text, expected", [
    ("rtsp://bob:pw@cam/live?token=abc&x=1", "rtsp://bob:***@cam/live?token=***&x=1"),
    ("mqtt://u:p@ss@h:1883/t", "mqtt://u:***@h:1883/t"),  # a password holding an @
    ("mqtt://fer@h/t", "mqtt://fer@h/t"),  # a user alone is no secret
    ("http://h/x?a=1&Token=Z#f", "http://h/x?a=1&Token=***#f"),
    ("GET with Authorization: Bearer abc.def", "GET with Authorization: Bearer ***"),
    ("lost rtsp://a:b@c/d and http://e/?key=k", "lost rtsp://a:***@c/d and http://e/?key=***"),
    ("video.mp4", "video.mp4"),
])
def test_redact_masks_passwords_tokens_and_secret_queries(text, expected):
    assert redact(text) == expected


def test_redact_argv_and_documents():
    argv = ["--serve-token", "T1", "--serve-token=T2", "--mqtt", "mqtt://u:p@h/t", "--serve", "8080"]
    assert redact_argv(argv) == ["--serve-token", "***", "--serve-token=***", "--mqtt", "mqtt://u:***@h/t",
                                 "--serve", "8080"]
    assert redact_doc({"a": ["rtsp://x:y@h/", 3], "b": {"c": "?token=z"}}) == {"a": ["rtsp://x:***@h/", 3],
                                                                              "b": {"c": "?token=***"}}


def _get(url: str) -> str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode("utf-8", "replace")


@pytest.mark.slow
def test_planted_secrets_reach_no_output(tmp_path, samples_dir, broker):
    broker.start()
    port, watch, proc = free_port(), None, None
    out = {name: tmp_path / name for name in ("run.jsonl", "visits.jsonl", "summary.json", "run.html")}
    try:
        watch = Subscriber(broker.port, "#")
        assert watch.subscribed.wait(10)
        cmd = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(samples_dir / "fer_test.mp4"),
               "--loop", "100", "--model", str(TFLITE), "--threads", "1",
               "--json", str(out["run.jsonl"]), "--visits", str(out["visits.jsonl"]),
               "--summary", str(out["summary.json"]), "--report", str(out["run.html"]),
               "--mqtt", f"mqtt://fer:{PASSWORD}@127.0.0.1:{broker.port}/fer/door", "--mqtt-summary-every", "0.2",
               "--ha-discovery", "--serve", f"127.0.0.1:{port}", "--serve-token", TOKEN]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        base, pages = f"http://127.0.0.1:{port}", {}

        def preview_has_a_face() -> bool:
            assert proc.poll() is None, proc.stderr.read()
            try:
                state = json.loads(_get(f"{base}/state.json?since=0"))
            except (urllib.error.URLError, ConnectionError):
                return False
            pages["state"] = json.dumps(state)
            return bool(state["faces"])

        wait_for(preview_has_a_face, 60, "the preview's first face")
        pages["page"] = _get(f"{base}/")
        wait_for(lambda: watch.get("fer/door/ha/state") is not None and watch.of("visit"), 60, "HA state and a visit")
        proc.send_signal(signal.SIGTERM)  # a service: its stop is its normal end, every output written
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        time.sleep(0.5)  # the goodbye messages published before the exit
        with watch.lock:
            messages = [f"{t} {p.decode('utf-8', 'replace')}" for t, p in watch.messages]
        outputs = {**{name: path.read_text() for name, path in out.items()}, **pages, "stderr (logs)": err,
                   "MQTT and Home Assistant payloads": "\n".join(messages)}
        assert all(outputs.values()), [k for k, v in outputs.items() if not v]  # every output has something in it
        leaks = [name for name, text in outputs.items() if PASSWORD in text or TOKEN in text]
        assert leaks == [], leaks
        # what the page and the log say instead: the command and the broker, with the secrets masked
        page = html.unescape(outputs["run.html"])
        assert "mqtt://fer:***@127.0.0.1" in page and "--serve-token '***'" in page, page[-600:]
        assert "mqtt: connected to mqtt://fer:***@127.0.0.1" in err, err
        assert any(t.startswith("homeassistant/") for t, _ in watch.messages)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        if watch:
            watch.close()
