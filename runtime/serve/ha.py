"""Home Assistant MQTT discovery (`--ha-discovery [PREFIX]`): fer-edge appears in Home Assistant as one device.

Home Assistant reads retained JSON configs on `<prefix>/<component>/<node_id>/<object_id>/config` (node_id and
object_id from [a-zA-Z0-9_-]). fer-edge publishes one `sensor` per value, all under one `device` block
(identifiers, name, manufacturer, model, sw_version) so they group as one device:

    faces       faces in view in the latest frame
    emotion     the dominant emotion over the recent window
    fps         frames per second over the recent window
    share_X     each emotion's share (%) of the faces seen in the recent window

Every sensor reads the one state topic `T/ha/state` (a JSON object, retained, published every
--mqtt-summary-every seconds) through a value_template, and its availability from `T/status`, the retained
{"device", "online"} message the sink already keeps: online on connect, offline on a clean stop and, as the
broker's last will, when the process dies. unique_ids are `<node_id>_<object_id>`, where node_id comes from
--device-name, else --mqtt-client-id, else `fer-edge-<hostname>`: stable across restarts (not the pid).
"""
from __future__ import annotations

import collections
import json
import re
import socket
import time

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.version import package_version

DEFAULT_PREFIX = "homeassistant"
AVAILABILITY_TEMPLATE = "{{ 'online' if value_json.online else 'offline' }}"


def check_prefix(prefix: str) -> str:
    """A discovery prefix is a topic to publish under: no wildcards, no empty levels."""
    prefix = prefix.strip().strip("/")
    if not prefix or any(c in prefix for c in "+#\0") or "//" in prefix:
        raise FerEdgeError(f"--ha-discovery: expected a topic prefix such as {DEFAULT_PREFIX!r} (no + or #, "
                           f"no empty level), found {prefix!r}")
    return prefix


def node_id(device_name: str | None, client_id: str | None) -> str:
    """The device's id in topics and unique_ids: [a-zA-Z0-9_-] only, as Home Assistant requires."""
    raw = device_name or client_id or f"fer-edge-{socket.gethostname()}"
    node = re.sub(r"[^a-zA-Z0-9_-]+", "_", raw).strip("_")
    if not node:
        raise FerEdgeError(f"--device-name: expected letters, digits, - or _, found {raw!r}")
    return node


def sensors(labels: tuple[str, ...]) -> list[dict]:
    """(object_id, name, value_template, unit) of each sensor, before the shared keys are added."""
    out = [{"object_id": "faces", "name": "Faces in view", "value_template": "{{ value_json.faces }}",
            "state_class": "measurement", "icon": "mdi:face-recognition"},
           {"object_id": "emotion", "name": "Dominant emotion", "value_template": "{{ value_json.emotion }}",
            "icon": "mdi:emoticon-outline"},
           {"object_id": "fps", "name": "Frames per second", "value_template": "{{ value_json.fps }}",
            "unit_of_measurement": "fps", "state_class": "measurement", "icon": "mdi:speedometer"}]
    for label in labels:
        out.append({"object_id": f"share_{label}", "name": f"{label.capitalize()} share",
                    "value_template": f"{{{{ value_json.share.{label} }}}}", "unit_of_measurement": "%",
                    "state_class": "measurement", "icon": "mdi:chart-donut"})
    return out


class HaDiscovery:
    """The discovery configs and the windowed state of one fer-edge instance."""

    def __init__(self, prefix: str, base_topic: str, node: str, labels: tuple[str, ...], name: str | None = None,
                 model: str = ""):
        self.prefix, self.base, self.node, self.labels = check_prefix(prefix), base_topic, node, tuple(labels)
        self.state_topic, self.status_topic = f"{base_topic}/ha/state", f"{base_topic}/status"
        self.device = {"identifiers": [node], "name": name or node, "manufacturer": "fer-edge",
                       "model": f"fer-edge {model}".strip(), "sw_version": package_version()}
        self.window: collections.Counter = collections.Counter()
        self.window_frames, self.faces_now = 0, 0
        self.window_start = time.monotonic()

    def configs(self) -> list[tuple[str, str]]:
        """(topic, payload) of every discovery config, to publish retained."""
        out = []
        for s in sensors(self.labels):
            object_id = s.pop("object_id")
            doc = {**s, "unique_id": f"{self.node}_{object_id}",
                   "state_topic": self.state_topic, "device": self.device,
                   "availability": [{"topic": self.status_topic, "value_template": AVAILABILITY_TEMPLATE,
                                     "payload_available": "online", "payload_not_available": "offline"}]}
            out.append((f"{self.prefix}/sensor/{self.node}/{object_id}/config", json.dumps(doc, separators=(",", ":"))))
        return out

    def add(self, faces: list) -> None:
        """One processed frame's faces (each with a .label)."""
        self.window_frames += 1
        self.faces_now = len(faces)
        self.window.update(f.label for f in faces)

    def state(self) -> dict:
        """The recent window's values (then the window starts again)."""
        now = time.monotonic()
        seconds, total = now - self.window_start, sum(self.window.values())
        doc = {"faces": self.faces_now,
               "emotion": self.window.most_common(1)[0][0] if total else "none",
               "fps": round(self.window_frames / seconds, 2) if seconds > 0 else 0.0,
               "share": {k: round(100.0 * self.window[k] / total, 1) if total else 0.0 for k in self.labels},
               "window_s": round(seconds, 1)}
        self.window.clear()
        self.window_frames, self.window_start = 0, now
        return doc
