"""fer-edge's discovery in a real Home Assistant (issue 38): the `homeassistant` package from PyPI, in its own
environment (.ci/homeassistant.sh builds .venv-ha on CPython 3.13), with its MQTT integration on a real Mosquitto.

The test starts Mosquitto on a free port and `hass` on a fresh config folder. The MQTT broker is a config entry
in current Home Assistant, not YAML: the test seeds `.storage/core.config_entries` with the entry at storage
version 1.1 (entry_id, domain, title, data, options, source, version), and Home Assistant's own storage migration
fills every key later versions added, so the seed does not follow each release's entry layout (the config flow's
form over the REST API would, and needs a token before the broker is set). A token comes from onboarding's user
step and /auth/token, as the frontend gets its first one. Then fer-edge runs with --ha-discovery on the sample
video, and the checks read Home Assistant itself: its entity registry (.storage/core.entity_registry: the
unique_ids under one device) and its REST API (the states). fer-edge runs twice: killed (SIGKILL), the broker's
last will makes every entity `unavailable`; the second run, which Home Assistant hears from its first frame (the
visit's start event is not retained), shows values from the video, and a clean stop (SIGTERM) makes every entity
`unavailable` again.

expected_entities() is the entity list as data: an entity fer-edge adds is one line there. FER_EDGE_HA_HASS names
the `hass` to run (.ci/run sets it: then a missing environment or broker fails instead of skipping).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from mqtt_broker import MOSQUITTO, Broker, free_port

pytestmark = [pytest.mark.data, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
DEVICE, NODE, TOPIC = "CI camera", "CI_camera", "fer/ci"
CLI = [sys.executable, "-m", "fer_edge.runtime.cli"]
TIMEOUT = 120  # seconds for each wait below: generous, for a loaded 2-core machine


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def expected_entities(labels: tuple[str, ...]) -> list[tuple[str, str, object]]:
    """(component, object_id, check) of every entity fer-edge's discovery declares; a check takes the entity's
    REST state ({"state", "attributes"}) while fer-edge runs and says whether it shows a value from the video."""
    percent = lambda s: (v := _number(s["state"])) is not None and 0.0 <= v <= 100.0  # noqa: E731
    return [("sensor", "faces", lambda s: (_number(s["state"]) or 0) >= 1),
            ("sensor", "emotion", lambda s: s["state"] in labels),
            ("sensor", "fps", lambda s: (_number(s["state"]) or 0) > 0),
            ("sensor", "unsure", lambda s: (_number(s["state"]) or -1) >= 0),
            ("binary_sensor", "face_in_view", lambda s: s["state"] == "on"),
            ("event", "visit", lambda s: s["attributes"].get("event_type") in ("start", "end"))] + [
           ("sensor", f"share_{label}", percent) for label in labels]


def _hass() -> Path:
    named = os.environ.get("FER_EDGE_HA_HASS")
    hass = Path(named) if named else ROOT / ".venv-ha" / "bin" / "hass"
    if not hass.is_file():
        if named:
            pytest.fail(f"FER_EDGE_HA_HASS={named}: expected Home Assistant's hass there (bash .ci/homeassistant.sh)")
        pytest.skip(f"no Home Assistant environment: {hass} is missing (bash .ci/homeassistant.sh builds it)")
    if MOSQUITTO is None:
        (pytest.fail if named else pytest.skip)("mosquitto is not installed (Debian: apt install mosquitto)")
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (pip install 'fer-edge[mqtt]')")
    return hass


def _http(url: str, token: str | None = None, data: dict | None = None, form: bool = False):
    """(status, parsed JSON or text) of a GET, or of a POST when data is given."""
    body, headers = None, {"Authorization": f"Bearer {token}"} if token else {}
    if data is not None:
        body = (urllib.parse.urlencode(data) if form else json.dumps(data)).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        text, status = e.read().decode(errors="replace"), e.code
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class HomeAssistant:
    """`hass -c FOLDER --skip-pip` on 127.0.0.1:port, its MQTT integration a config entry for the broker."""

    def __init__(self, hass: Path, folder: Path, http_port: int, mqtt_port: int):
        self.hass, self.folder, self.url, self.proc, self.token = hass, folder, f"http://127.0.0.1:{http_port}", None, None
        (folder / ".storage").mkdir(parents=True)
        (folder / "frontend" / "hass_frontend").mkdir(parents=True)  # the UI is not under test: no files to serve
        (folder / "configuration.yaml").write_text(
            "homeassistant:\n  name: fer-edge CI\n  latitude: 0\n  longitude: 0\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  country: DE\n  currency: EUR\n  language: en\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {http_port}\napi:\nonboarding:\n"
            f"frontend:\n  development_repo: {folder / 'frontend'}\n"
            "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n")
        entry = {"entry_id": uuid.uuid4().hex, "domain": "mqtt", "title": f"127.0.0.1:{mqtt_port}", "version": 1,
                 "source": "user", "data": {"broker": "127.0.0.1", "port": mqtt_port},
                 "options": {"discovery": True, "discovery_prefix": "homeassistant"}}
        (folder / ".storage" / "core.config_entries").write_text(json.dumps(
            {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [entry]}}))

    def start(self) -> None:
        log = open(self.folder / "hass.out", "wb")
        self.proc = subprocess.Popen([str(self.hass), "-c", str(self.folder), "--skip-pip"], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, lines: int = 40) -> str:
        path = self.folder / "home-assistant.log"
        text = path.read_text(errors="replace") if path.is_file() else (self.folder / "hass.out").read_text()
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, cond, what: str, timeout: float = TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"hass exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                value = cond()
            except OSError:  # not listening yet, or a reset connection while it starts
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; Home Assistant's log:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.2)

    def onboard(self) -> str:
        """The owner user through onboarding's first step, then a token for its auth code."""
        self.wait(lambda: _http(f"{self.url}/api/onboarding")[0] == 200, "the HTTP API")
        client = f"{self.url}/"
        status, doc = _http(f"{self.url}/api/onboarding/users", data={
            "client_id": client, "name": "CI", "username": "ci", "password": uuid.uuid4().hex, "language": "en"})
        assert status == 200 and "auth_code" in doc, (status, doc)
        status, doc = _http(f"{self.url}/auth/token", form=True, data={
            "grant_type": "authorization_code", "code": doc["auth_code"], "client_id": client})
        assert status == 200 and doc.get("access_token"), (status, doc)
        self.token = doc["access_token"]
        self.wait(lambda: self.get("/api/config")[1].get("state") == "RUNNING", "Home Assistant to be running")
        return self.token

    def get(self, path: str):
        return _http(f"{self.url}{path}", self.token)

    def registry(self, name: str) -> dict | None:
        path = self.folder / ".storage" / name  # written by Home Assistant some seconds after a change
        try:
            return json.loads(path.read_text())["data"]
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class BirthWatcher:
    """Subscribes to Home Assistant's birth topic: 'online' there means its MQTT integration is connected."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.seen: list[bytes] = []
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, *_: cl.subscribe("homeassistant/status", qos=1)
        c.on_message = lambda _c, _u, msg: self.seen.append(msg.payload)
        c.connect("127.0.0.1", port)
        c.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _run_fer_edge(samples_dir: Path, mqtt_port: int) -> subprocess.Popen:
    return subprocess.Popen(CLI + [
        "--source", str(samples_dir / "fer_test.mp4"), "--loop", "1000", "--threads", "1", "--quiet",
        "--mqtt", f"mqtt://127.0.0.1:{mqtt_port}/{TOPIC}", "--mqtt-summary-every", "0.5",
        "--ha-discovery", "--device-name", DEVICE], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _entity_ids(ha: HomeAssistant, expected) -> dict[str, str]:
    """unique_id -> entity_id of every expected entity, once the registry holds them all under one device
    whose identifiers are the node id, made by fer-edge."""
    want = {f"{NODE}_{object_id}": component for component, object_id, _ in expected}

    def found():
        entities, devices = ha.registry("core.entity_registry"), ha.registry("core.device_registry")
        if not entities or not devices:
            return None
        ours = {e["unique_id"]: e for e in entities["entities"] if e["platform"] == "mqtt" and e["unique_id"] in want}
        device = [d for d in devices["devices"] if ["mqtt", NODE] in d["identifiers"]]
        if len(ours) < len(want) or len(device) != 1:
            return None
        (device,) = device
        assert (device["name"], device["manufacturer"]) == (DEVICE, "fer-edge") and device["sw_version"], device
        for uid, e in ours.items():
            assert e["entity_id"].split(".")[0] == want[uid] and e["device_id"] == device["id"], e
        return {uid: e["entity_id"] for uid, e in ours.items()}

    return ha.wait(found, f"the entity registry to hold {sorted(want)} under one device {DEVICE!r}")


def _states(ha: HomeAssistant, ids: dict[str, str], state: str) -> set[str]:
    """The entity_ids whose state is `state` now."""
    return {e for e in ids.values() if ha.get(f"/api/states/{e}")[1].get("state") == state}


def _states_show_the_video(ha: HomeAssistant, ids: dict[str, str], expected) -> None:
    """Every check passes on some state while fer-edge runs (faces >= 1 need not hold at every instant)."""
    pending = {f"{NODE}_{object_id}": check for _, object_id, check in expected}
    last: dict[str, object] = {}

    def poll():
        for uid, check in list(pending.items()):
            status, doc = ha.get(f"/api/states/{ids[uid]}")
            last[uid] = doc
            if status == 200 and check(doc):
                del pending[uid]
        return not pending

    try:
        ha.wait(poll, "every entity to show a value from the video")
    except AssertionError as e:
        raise AssertionError(f"{e}\nstill failing: {[(u, last.get(u)) for u in pending]}") from None


def test_home_assistant_shows_fer_edge_and_marks_it_unavailable(tmp_path, samples_dir):
    hass = _hass()
    from fer_edge import Recognizer

    expected = expected_entities(Recognizer().labels)
    mqtt_port, http_port = free_port(), free_port()
    (tmp_path / "mqtt").mkdir()
    broker = Broker(tmp_path / "mqtt", mqtt_port)
    broker.start()
    ha, birth, proc = HomeAssistant(hass, tmp_path / "ha", http_port, mqtt_port), BirthWatcher(mqtt_port), None
    try:
        ha.start()
        ha.onboard()
        ha.wait(lambda: b"online" in birth.seen, "Home Assistant's MQTT birth message (connected to the broker)")
        # run 1: discovery, then SIGKILL (no goodbye: the broker's last will is what Home Assistant hears)
        proc = _run_fer_edge(samples_dir, mqtt_port)
        ids = _entity_ids(ha, expected)
        ha.wait(lambda: _states(ha, ids, "unavailable") == set(), "every entity to be available")
        proc.kill()
        proc.wait()
        ha.wait(lambda: _states(ha, ids, "unavailable") == set(ids.values()), "unavailable after SIGKILL")
        # run 2: Home Assistant is subscribed from the first frame on (the visit's start event is not retained)
        proc = _run_fer_edge(samples_dir, mqtt_port)
        _states_show_the_video(ha, ids, expected)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()
        ha.wait(lambda: _states(ha, ids, "unavailable") == set(ids.values()), "unavailable after SIGTERM")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        ha.stop()
        birth.close()
        broker.stop()
