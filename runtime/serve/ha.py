"""Home Assistant MQTT discovery (`--ha-discovery [PREFIX]`): fer-edge appears in Home Assistant as one device.

Home Assistant reads retained JSON configs on `<prefix>/<component>/<node_id>/<object_id>/config` (node_id and
object_id from [a-zA-Z0-9_-]). fer-edge publishes one `sensor` per value, all under one `device` block
(identifiers, name, manufacturer, model, sw_version) so they group as one device:

    faces       faces in view in the latest frame
    emotion     the dominant emotion of the sure faces over the recent window
    unsure      faces in the recent window the model was not sure of (not in the shares)
    fps         frames per second over the recent window
    share_X     each emotion's share (%) of the sure faces seen in the recent window

Every sensor reads the one state topic `T/ha/state` (a JSON object, retained, published every
--mqtt-summary-every seconds) through a value_template. Beside them, a `binary_sensor` "Face in view" (device
class occupancy) reads `T/ha/occupancy` (ON/OFF, retained, published when it changes and again on every
reconnect: on while a track with a sure frame is alive, off once none has been for --in-view-hold seconds), and an `event` entity "Visit" reads `T/ha/visit` (each visit's start and end: {"event_type": "start" |
"end", and the visit's fields as attributes}). Every entity takes its availability from `T/status`, the retained
{"device", "online"} message the sink already keeps: online on connect, offline on a clean stop and, as the
broker's last will, when the process dies. unique_ids are `<node_id>_<object_id>`, where node_id comes from
--device-name, else --mqtt-client-id, else `fer-edge-<hostname>`: stable across restarts (not the pid).
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import time

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.version import package_version
from fer_edge.runtime.faces.facestats import FaceStats

DEFAULT_PREFIX = "homeassistant"
AVAILABILITY_TEMPLATE = "{{ 'online' if value_json.online else 'offline' }}"
OCCUPANCY, VISIT = "ha/occupancy", "ha/visit"  # subtopics of the occupancy sensor and the visit event entity
VISIT_EVENTS = ("start", "end")  # the event entity's event_types (update events stay on T/visit)


def check_prefix(prefix: str) -> str:
    """A discovery prefix is a topic to publish under: no wildcards, no empty levels."""
    prefix = prefix.strip().strip("/")
    if not prefix or any(c in prefix for c in "+#\0") or "//" in prefix:
        raise FerEdgeError(f"--ha-discovery: expected a topic prefix such as {DEFAULT_PREFIX!r} (no + or #, "
                           f"no empty level), found {prefix!r}")
    return prefix


def node_id(device_name: str | None, client_id: str | None) -> str:
    """The device's id in topics and unique_ids: [a-zA-Z0-9_-] only, as Home Assistant requires. Spaces and dots
    become _ ("Hall camera" -> Hall_camera); a name with any other character gets a short hash of the whole name
    too, so distinct names stay distinct ids ("cam/#" is not "cam")."""
    raw = device_name or client_id or f"fer-edge-{socket.gethostname()}"
    node = re.sub(r"[^a-zA-Z0-9_-]+", "_", raw).strip("_")
    if not node:
        raise FerEdgeError(f"--device-name: expected letters, digits, - or _, found {raw!r}")
    if re.search(r"[^a-zA-Z0-9_ .-]", raw):
        node += "_" + hashlib.sha256(raw.encode()).hexdigest()[:6]
    return node


def sensors(labels: tuple[str, ...]) -> list[dict]:
    """(object_id, name, value_template, unit) of each sensor, before the shared keys are added."""
    out = [{"object_id": "faces", "name": "Faces in view", "value_template": "{{ value_json.faces }}",
            "state_class": "measurement", "icon": "mdi:face-recognition"},
           {"object_id": "emotion", "name": "Dominant emotion", "value_template": "{{ value_json.emotion }}",
            "icon": "mdi:emoticon-outline"},
           {"object_id": "fps", "name": "Frames per second", "value_template": "{{ value_json.fps }}",
            "unit_of_measurement": "fps", "state_class": "measurement", "icon": "mdi:speedometer"},
           {"object_id": "unsure", "name": "Unsure faces", "value_template": "{{ value_json.unsure }}",
            "state_class": "measurement", "icon": "mdi:help-circle-outline"}]
    for label, slug in zip(labels, slugs(labels)):  # the model's own classes, whatever their names
        out.append({"object_id": f"share_{slug}", "name": f"{label.capitalize()} share",
                    "value_template": f"{{{{ value_json.share['{label}'] }}}}", "unit_of_measurement": "%",
                    "state_class": "measurement", "icon": "mdi:chart-donut"})
    return out


def slugs(labels: tuple[str, ...]) -> list[str]:
    """Entity-id-safe names for a model's classes ("very happy" -> very_happy), distinct even where two slug alike."""
    out = []
    for i, label in enumerate(labels):
        slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or f"class_{i}"
        out.append(slug if slug not in out else f"{slug}_{i}")
    return out


class HaDiscovery:
    """The discovery configs and the windowed state of one fer-edge instance."""

    def __init__(self, prefix: str, base_topic: str, node: str, labels: tuple[str, ...], name: str | None = None,
                 model: str = ""):
        self.prefix, self.base, self.node, self.labels = check_prefix(prefix), base_topic, node, tuple(labels)
        self.state_topic, self.status_topic = f"{base_topic}/ha/state", f"{base_topic}/status"
        self.device = {"identifiers": [node], "name": name or node, "manufacturer": "fer-edge",
                       "model": f"fer-edge {model}".strip(), "sw_version": package_version()}
        self.window = FaceStats()  # the faces of the recent window (runtime/faces/facestats.py)
        self.window_frames, self.faces_now = 0, 0
        self.window_start = time.monotonic()
        self.occupancy: str | None = None  # ON / OFF as last published

    def entities(self) -> list[tuple[str, dict]]:
        """(component, config before the shared keys) of every entity: the sensors, the occupancy sensor, the
        visit event entity."""
        out = [("sensor", {**s, "state_topic": self.state_topic}) for s in sensors(self.labels)]
        out.append(("binary_sensor", {"object_id": "face_in_view", "name": "Face in view", "device_class": "occupancy",
                                      "state_topic": f"{self.base}/{OCCUPANCY}", "payload_on": "ON",
                                      "payload_off": "OFF"}))
        out.append(("event", {"object_id": "visit", "name": "Visit", "event_types": list(VISIT_EVENTS),
                              "state_topic": f"{self.base}/{VISIT}", "icon": "mdi:account-clock"}))
        return out

    def configs(self) -> list[tuple[str, str]]:
        """(topic, payload) of every discovery config, to publish retained."""
        out = []
        for component, s in self.entities():
            object_id = s.pop("object_id")
            doc = {**s, "unique_id": f"{self.node}_{object_id}", "device": self.device,
                   "availability": [{"topic": self.status_topic, "value_template": AVAILABILITY_TEMPLATE,
                                     "payload_available": "online", "payload_not_available": "offline"}]}
            out.append((f"{self.prefix}/{component}/{self.node}/{object_id}/config",
                        json.dumps(doc, separators=(",", ":"))))
        return out

    def add(self, faces: list) -> None:
        """One processed frame's faces (each with .label and .sure), into the recent window."""
        self.window_frames += 1
        self.faces_now = len(faces)
        self.window.add_all(faces)

    def occupancy_of(self, in_view: bool) -> str | None:
        """The occupancy (ON/OFF) to publish when it changed: a frame's `in_view` (runtime/faces/occupancy.py:
        from tracks, with a hold time, so an unsure frame changes nothing), else None."""
        now = "ON" if in_view else "OFF"
        if now == self.occupancy:
            return None
        self.occupancy = now
        return now

    @staticmethod
    def visit_events(events: list[dict]) -> list[tuple[str, dict]]:
        """(subtopic, payload) for the event entity: each visit's start and end, its kind as event_type."""
        return [(VISIT, {"event_type": e["event"], **{k: v for k, v in e.items() if k != "event"}})
                for e in events if e["event"] in VISIT_EVENTS]

    def state(self) -> dict:
        """The recent window's values (then the window starts again)."""
        now = time.monotonic()
        seconds, w = now - self.window_start, self.window
        doc = {"faces": self.faces_now, "emotion": w.dominant() or "none",
               "unsure": w.unsure, "fps": round(self.window_frames / seconds, 2) if seconds > 0 else 0.0,
               "share": {k: round(100.0 * v, 1) for k, v in w.shares(self.labels, digits=6).items()},
               "window_s": round(seconds, 1)}
        self.window.clear()
        self.window_frames, self.window_start = 0, now
        return doc
