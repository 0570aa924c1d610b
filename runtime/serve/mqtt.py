"""MQTT output (`--mqtt mqtt://[user:pass@]host[:port]/topic`): per-face events and a periodic summary as JSON.

Topics under the base topic T of the URL:

    T/face      one message per face per frame: {device, frame, time, ts, track, box, label, probs, sure}
                (the JSON Lines face plus its frame, media time and wall-clock ts)
    T/visit     one message per visit event (runtime.faces.visits: start, update, end) plus device and ts;
                always QoS 1, queued like the rest while the broker is away
    T/summary   every --mqtt-summary-every seconds and once at the end ("final": true): frames, faces,
                fps, emotion shares of the sure faces, unsure faces, the current label per track, and the
                link's counts (sent, dropped...)
    T/status    retained {"device", "online"}: true on connect, false as the broker's last will

The frame loop never waits for the network. Messages go into a bounded offline queue (--mqtt-queue);
a pump thread hands them to paho-mqtt while connected, at most MAX_INFLIGHT unacknowledged at a time
(QoS 1 by default: what paho holds when the link drops it re-sends on reconnect). While the broker is
unreachable the queue fills; when full it drops the oldest message and counts it. State, availability, discovery
and visit messages wait in a queue of their own that per-face messages cannot evict, and go first; the retained
states (occupancy, Home Assistant's state) are said again on every reconnect. paho's network thread
reconnects with exponential backoff (BACKOFF_MIN_S doubling to BACKOFF_MAX_S). At the end of the run
the sink waits up to --mqtt-flush-timeout seconds for the queue to drain.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass

from fer_edge.runtime.core.errors import FerEdgeError, require
from fer_edge.runtime.core.redact import redact
from fer_edge.runtime.faces.facestats import FaceStats
from fer_edge.runtime.media.sinks import Sink
from fer_edge.runtime.serve.ha import OCCUPANCY

log = logging.getLogger("fer_edge.runtime")

MAX_INFLIGHT = 64  # unacknowledged QoS 1 messages handed to paho; the rest wait in our bounded queue
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0  # reconnect delay doubles from min to max, reset on success
PASSWORD_ENV = "FER_EDGE_MQTT_PASSWORD"  # used when the URL names a user but no password (keeps it off disk)


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    topic: str
    tls: bool
    username: str | None = None
    password: str | None = None

    def redacted(self) -> str:
        user = f"{self.username}:{self.password or ''}@" if self.username else ""
        return redact(f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.topic}")


def parse_mqtt_url(url: str, tls: bool = False) -> MqttTarget:
    """mqtt://[user[:pass]@]host[:port]/topic (1883) or mqtts://... (TLS, 8883)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise FerEdgeError(f"--mqtt: expected mqtt://[user:pass@]host[:port]/topic or mqtts://..., found "
                           f"{parts.scheme + '://' if parts.scheme else 'no scheme'}")
    tls = tls or parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise FerEdgeError(f"--mqtt: the port in {url.split('@')[-1]!r} is not a number from 1 to 65535") from None
    topic = urllib.parse.unquote(parts.path.lstrip("/")).rstrip("/")
    if not parts.hostname:
        raise FerEdgeError("--mqtt: the URL names no broker host")
    if not topic:
        raise FerEdgeError("--mqtt: the URL names no topic (mqtt://host:1883/fer/kitchen)")
    if any(c in topic for c in "+#\0"):
        raise FerEdgeError(f"--mqtt: the topic {topic!r} holds a wildcard (+ or #); publish topics cannot")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if user and password is None:
        password = os.environ.get(PASSWORD_ENV)
    return MqttTarget(parts.hostname, port, topic, tls, user, password)


class OfflineQueue:
    """Two bounded FIFOs that drop their oldest item when full, and count what they dropped: `items` (per-face
    events, summaries) and `urgent` (availability, discovery, state, occupancy, visits), sent first and never
    evicted by a face event. Items are (topic, payload, retain, qos); an urgent retained item replaces the one
    still waiting on its topic (only the newest state matters), so a long outage keeps every state's last value
    and drops only the oldest visits beyond `maxlen`."""

    def __init__(self, maxlen: int):
        if maxlen < 1:
            raise FerEdgeError(f"--mqtt-queue must be 1 or more, found {maxlen}")
        self.items: collections.deque = collections.deque()
        self.urgent: collections.deque = collections.deque()
        self.maxlen, self.dropped = maxlen, 0
        self.cond = threading.Condition()  # (an RLock: put_front is called with it held)

    def put(self, item, urgent: bool = False) -> None:
        with self.cond:
            if urgent:
                self._put_urgent(item, front=False)
            else:
                if len(self.items) >= self.maxlen:
                    self.items.popleft()
                    self.dropped += 1
                self.items.append(item)
            self.cond.notify_all()

    def put_front(self, items: list) -> None:
        """Urgent items to go out before anything else, in this order (a connection's first messages)."""
        with self.cond:
            for item in reversed(items):
                self._put_urgent(item, front=True)
            self.cond.notify_all()

    def _put_urgent(self, item, front: bool) -> None:
        if item[2]:  # retained: the newest value of its topic is the only one worth sending
            self.urgent = collections.deque(i for i in self.urgent if i[0] != item[0])
        elif sum(not i[2] for i in self.urgent) >= self.maxlen:
            self.urgent.remove(next(i for i in self.urgent if not i[2]))
            self.dropped += 1
        self.urgent.appendleft(item) if front else self.urgent.append(item)

    def pop(self) -> tuple[tuple, bool]:
        """The next item to send (urgent ones first) and whether it was urgent; the caller holds `cond`."""
        return (self.urgent.popleft(), True) if self.urgent else (self.items.popleft(), False)

    def unpop(self, item, urgent: bool) -> None:
        (self.urgent if urgent else self.items).appendleft(item)

    def __len__(self) -> int:
        return len(self.items) + len(self.urgent)


@dataclass(frozen=True, kw_only=True)
class MqttOptions:
    """What an MqttSink publishes to and how (the --mqtt-* flags, built by the command line or a caller)."""
    url: str  # mqtt://[user[:pass]@]host[:port]/topic or mqtts://...
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    qos: int = 1
    queue: int = 1000
    summary_every: float = 10.0
    client_id: str | None = None
    flush_timeout: float = 5.0

    def __post_init__(self):
        """Checked once, as they are made (from the command line, a config file or Python)."""
        parse_mqtt_url(self.url, self.tls)
        for name, path in (("--mqtt-ca", self.ca), ("--mqtt-cert", self.cert), ("--mqtt-key", self.key)):
            if path and not os.path.isfile(path):
                raise FerEdgeError(f"{name}: no such file {path}")
        if self.key and not self.cert:
            raise FerEdgeError("--mqtt-key needs --mqtt-cert")
        if int(self.queue) < 1:
            raise FerEdgeError(f"--mqtt-queue must be 1 or more, found {self.queue}")
        for name, value in (("--mqtt-summary-every", self.summary_every), ("--mqtt-flush-timeout", self.flush_timeout)):
            if not value >= 0:
                raise FerEdgeError(f"{name} must be 0 seconds or more, found {value}")


class MqttSink(Sink):
    """A sink (write/close) publishing to an MQTT broker through paho-mqtt 2.x."""

    def __init__(self, options: MqttOptions, ha=None, connect_timeout: float | None = None):
        """connect_timeout: wait that long for the broker's first answer and raise FerEdgeError if it cannot be
        reached or refuses the client (a start-up error); None: connect in the background (queue meanwhile)."""
        o = options
        url, tls, ca, cert, key, insecure = o.url, o.tls, o.ca, o.cert, o.key, o.insecure
        qos, queue, summary_every, client_id, flush_timeout = o.qos, o.queue, o.summary_every, o.client_id, o.flush_timeout
        mqtt = require("paho.mqtt.client", "mqtt")
        self.target = t = parse_mqtt_url(url, tls)
        self.qos, self.summary_every, self.flush_timeout = int(qos), float(summary_every), float(flush_timeout)
        self.device = socket.gethostname()
        self.queue = OfflineQueue(int(queue))
        self.sent: collections.Counter = collections.Counter()  # acknowledged messages per kind (face, summary, status)
        self.reconnects = self.connects = 0
        self.connected = False
        self._inflight: dict[int, str] = {}  # mid -> kind
        self._acked_early: set[int] = set()
        self._closing = self._stop_now = False
        self.frames = 0
        self.face_stats = FaceStats()  # every face published (runtime/faces/facestats.py)
        self.track_labels: dict[int, str] = {}
        self.started = self._last_summary = time.monotonic()
        self.ha = ha  # a serve/ha.py HaDiscovery: discovery configs on every connect, its state with each summary
        self._states: dict[str, str] = {}  # subtopic -> the last retained state payload (occupancy, HA state)
        if ha is not None:  # no one in view before the first frame: said on connect (a crashed run's ON goes)
            ha.occupancy = self._states[OCCUPANCY] = "OFF"
        self.refused: str | None = None  # the broker's reason when it refused the connection
        self.unreachable: str | None = None
        self._waiting = connect_timeout is not None  # the first refusal becomes wait_connected()'s error line

        self.client_id = client_id = client_id or f"fer-edge-{self.device}-{os.getpid()}"
        self.client = c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if t.username:
            c.username_pw_set(t.username, t.password)
        if t.tls:
            import ssl

            c.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
            c.tls_insecure_set(insecure)
        c.will_set(f"{t.topic}/status", json.dumps({"device": self.device, "online": False}), qos=1, retain=True)
        c.reconnect_delay_set(BACKOFF_MIN_S, BACKOFF_MAX_S)
        c.on_connect, c.on_disconnect, c.on_publish = self._on_connect, self._on_disconnect, self._on_publish
        c.on_connect_fail = self._on_connect_fail
        try:
            c.connect_async(t.host, t.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise FerEdgeError(f"--mqtt {t.redacted()}: {exc}") from None
        c.loop_start()  # paho's network thread: connects, and reconnects with backoff for ever
        self._pump_thread = threading.Thread(target=self._pump, name="fer-edge-mqtt", daemon=True)
        self._pump_thread.start()
        log.debug("mqtt: publishing to %s", t.redacted())  # "connected to" follows; an error at start is one line
        if connect_timeout is not None:
            self.wait_connected(connect_timeout)

    # -- paho callbacks (its network thread) ----------------------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason, _props):
        if reason.is_failure:
            if not self._waiting:  # at start wait_connected() turns it into the one error line
                log.warning("mqtt: %s refused the connection: %s", self.target.redacted(), reason)
            with self.queue.cond:
                self.refused = str(reason)
                self.queue.cond.notify_all()
            return
        status = (f"{self.target.topic}/status", json.dumps({"device": self.device, "online": True}), True, self.qos)
        first = [status] + [(topic, payload, True, self.qos)
                            for topic, payload in (self.ha.configs() if self.ha else [])]
        with self.queue.cond:
            self.connected = True
            self.connects += 1
            self.reconnects = self.connects - 1
            # every (re)connect says the current state again: a broker restarted without persistence forgot it
            first += [(f"{self.target.topic}/{sub}", payload, True, self.qos) for sub, payload in self._states.items()]
            self.queue.put_front(first)
        log.info("mqtt: connected to %s%s", self.target.redacted(), " again" if self.connects > 1 else "")

    def _on_connect_fail(self, _client, _userdata):
        with self.queue.cond:
            self.unreachable = self.unreachable or "no answer"
            self.queue.cond.notify_all()

    def wait_connected(self, timeout: float = 10.0) -> None:
        """At start: raise FerEdgeError (and stop the client) if the broker cannot be reached or refuses us.
        Later losses are not errors: the sink queues and reconnects."""
        deadline = time.monotonic() + timeout
        with self.queue.cond:
            while not (self.connected or self.refused or self.unreachable) and time.monotonic() < deadline:
                self.queue.cond.wait(0.1)
            connected, refused, unreachable = self.connected, self.refused, self.unreachable
            self._waiting = False
        if connected:
            return
        self.abort()
        where = f"--mqtt {self.target.redacted()}"
        if refused:
            raise FerEdgeError(f"{where}: the broker refused the connection ({refused}); expected it to accept "
                               f"client id {self.client_id!r} (see --mqtt-client-id) and the credentials")
        why = "the connection failed" if unreachable else f"no MQTT answer within {timeout:g} s"
        raise FerEdgeError(f"{where}: cannot reach the broker ({why}); expected a running broker at that host and port")

    def abort(self) -> None:
        """Stop at once, publishing nothing more (a start that failed)."""
        with self.queue.cond:
            self._closing = self._stop_now = True
            self.queue.cond.notify_all()
        self.client.disconnect()
        self.client.loop_stop()
        self._pump_thread.join(1.0)

    def _on_disconnect(self, _client, _userdata, _flags, reason, _props):
        with self.queue.cond:
            was, self.connected = self.connected, False
        if was and not self._closing:
            log.warning("mqtt: lost %s (%s); reconnecting with backoff, queueing up to %d messages",
                        self.target.redacted(), reason, self.queue.maxlen)

    def _on_publish(self, _client, _userdata, mid, _reason, _props):
        with self.queue.cond:
            kind = self._inflight.pop(mid, None)
            if kind is None:
                self._acked_early.add(mid)  # acknowledged before _pump recorded it
            else:
                self.sent[kind] += 1
            self.queue.cond.notify_all()

    # -- the pump thread ------------------------------------------------------------------------

    def _pump(self) -> None:
        q = self.queue
        while True:
            with q.cond:
                while not self._stop_now and (not self.connected or not len(q) or len(self._inflight) >= MAX_INFLIGHT):
                    if self._closing and not len(q) and not self._inflight:
                        return
                    q.cond.wait(0.5)
                if self._stop_now:
                    return
                item, urgent = q.pop()
                topic, payload, retain, qos = item
            info = self.client.publish(topic, payload, qos, retain)
            kind = topic.rsplit("/", 1)[1]
            with q.cond:
                if qos == 0 and info.rc != 0:  # QoS 0 is not kept by paho: back to the front
                    q.unpop(item, urgent)
                    q.cond.wait(0.2)
                elif info.mid in self._acked_early:  # QoS 1 is kept by paho, connected or not
                    self._acked_early.discard(info.mid)
                    self.sent[kind] += 1
                else:
                    self._inflight[info.mid] = kind

    # -- the sink -------------------------------------------------------------------------------

    def _put(self, subtopic: str, doc, retain: bool = False, qos: int | None = None, urgent: bool = False) -> None:
        """Queue one message; an urgent one (state, visits) is never evicted by per-face messages, and a retained
        urgent one is remembered and said again on every reconnect."""
        payload = redact(doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":")))
        with self.queue.cond:
            if urgent and retain:
                self._states[subtopic] = payload
            self.queue.put((f"{self.target.topic}/{subtopic}", payload, retain, self.qos if qos is None else qos),
                           urgent)

    def write(self, frame, result) -> None:
        ts = round(time.time(), 3)
        self.frames += 1
        self.face_stats.add_all(result.faces)
        for f in result.faces:
            self.track_labels[f.track] = f.label
            self._put("face", {"device": self.device, "frame": result.frame, "time": round(result.time, 4), "ts": ts,
                               **f.to_dict()})
        self.write_visits(result.visits, ts)
        if self.ha is not None:
            self._ha_write(result)
        if self.summary_every > 0 and time.monotonic() - self._last_summary >= self.summary_every:
            self._put("summary", self.summary())
            if self.ha is not None:
                self._put("ha/state", self.ha.state(), retain=True, urgent=True)

    def write_visits(self, events: list[dict], ts: float | None = None) -> None:
        """Visit events on T/visit (QoS 1), and their start and end to Home Assistant's event entity."""
        ts = round(time.time(), 3) if ts is None else ts
        for event in events:
            self._put("visit", {"device": self.device, "ts": ts, **event}, qos=1, urgent=True)
        for topic, doc in self.ha.visit_events(events) if self.ha is not None else ():
            self._put(topic, doc, qos=1, urgent=True)

    def _ha_write(self, result) -> None:
        """Home Assistant's window of faces, and its occupancy (the frame's `in_view`) when it changes."""
        self.ha.add(result.faces)
        changed = self.ha.occupancy_of(result.in_view)
        if changed is not None:
            self._put(OCCUPANCY, changed, retain=True, urgent=True)

    def stats(self) -> dict:
        with self.queue.cond:
            return {"connected": self.connected, "sent": sum(self.sent.values()), "sent_faces": self.sent["face"],
                    "sent_visits": self.sent["visit"],
                    "queued": len(self.queue),
                    "inflight": len(self._inflight), "dropped": self.queue.dropped, "reconnects": self.reconnects}

    def summary(self, final: bool = False) -> dict:
        now = time.monotonic()
        self._last_summary = now
        seconds, stats = now - self.started, self.face_stats
        return {"device": self.device, "ts": round(time.time(), 3), "final": final, "frames": self.frames,
                "faces": stats.faces, "seconds": round(seconds, 3),
                "fps": round(self.frames / seconds, 2) if seconds > 0 else 0.0,
                "emotion_share": stats.shares(), "unsure_faces": stats.unsure,
                "tracks": {str(k): v for k, v in sorted(self.track_labels.items())}, "mqtt": self.stats()}

    def finish(self, commit: bool = True) -> None:
        """The last state, the final summary and the goodbye, either way (a link has nothing to take back)."""
        if self._closing:
            return
        if self.ha is not None:
            self._put("ha/state", self.ha.state(), retain=True, urgent=True)
            if self.ha.occupancy_of(False) is not None:  # no face in view once stopped
                self._put(OCCUPANCY, "OFF", retain=True, urgent=True)
        self._put("summary", self.summary(final=True))
        with self.queue.cond:
            self._closing = True
            self.queue.cond.notify_all()
        self._pump_thread.join(self.flush_timeout)
        with self.queue.cond:
            self._stop_now = True
            self.queue.cond.notify_all()
        self._pump_thread.join(1.0)
        s = self.stats()
        lost = s["queued"] + s["inflight"]
        (log.warning if lost or s["dropped"] else log.info)(
            "mqtt: sent %d messages (%d face events), dropped %d (queue full), undelivered at exit %d, reconnects %d",
            s["sent"], s["sent_faces"], s["dropped"], lost, s["reconnects"])
        try:
            if self.connected:
                self.client.publish(f"{self.target.topic}/status",
                                    json.dumps({"device": self.device, "online": False}), 1, True).wait_for_publish(1.0)
        except (RuntimeError, ValueError):
            pass  # the link went down during shutdown: the broker's last will says the same
        self.client.disconnect()
        self.client.loop_stop()
