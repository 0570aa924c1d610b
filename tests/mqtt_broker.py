"""A real Mosquitto broker and an MQTT subscriber for the tests (tests/test_deploy_mqtt.py, tests/test_service.py):
written once here; the `broker` fixture in conftest.py hands one out, or skips with the reason."""
from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Broker:
    """mosquitto on 127.0.0.1:port with persistence in a temporary folder (sessions and retained messages survive
    a restart), or without (`persistence=False`: a restart forgets everything)."""

    def __init__(self, folder: Path, port: int, persistence: bool = True):
        self.port, self.conf, self.proc = port, folder / "mosquitto.conf", None
        (folder / "db").mkdir(exist_ok=True)
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence {'true' if persistence else 'false'}\n"
                             f"persistence_location {folder / 'db'}/\nuser {getpass.getuser()}\n"
                             f"log_dest file {folder / 'mosquitto.log'}\n")

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, f"mosquitto exited with {self.proc.returncode}"
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file and exits
            self.proc.wait(10)


class Subscriber:
    """Subscribes to topics (QoS 1) and keeps every message, retained ones included (they arrive on subscribe).
    With a client_id it keeps a persistent session, so nothing is lost while it reconnects."""

    def __init__(self, port: int, *topics: str, client_id: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self.times: list[float] = []  # time.monotonic() of each message's arrival
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                      clean_session=client_id is None)
        c.reconnect_delay_set(0.2, 1)
        c.on_connect = lambda cl, *_: [cl.subscribe(t, qos=1) for t in topics]
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port)
        c.loop_start()

    def _on_message(self, _c, _u, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload))
            self.times.append(time.monotonic())

    def of(self, kind: str) -> list[dict]:
        """Every message on a topic ending in /kind, in order."""
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t.endswith("/" + kind)]

    def last(self) -> dict[str, bytes]:
        with self.lock:
            return dict(self.messages)  # the last payload of each topic

    def get(self, topic: str):
        payload = self.last().get(topic)
        return None if payload is None else json.loads(payload)

    def matching(self, prefix: str) -> dict:
        return {t: json.loads(p) for t, p in self.last().items() if t.startswith(prefix) and p}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
