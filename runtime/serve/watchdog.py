"""systemd's notify protocol in plain socket code (no python-systemd): READY, WATCHDOG and STOPPING.

Under a `Type=notify` unit systemd sets $NOTIFY_SOCKET (a path, or `@name` for the abstract namespace) and
reads datagrams of newline-separated KEY=VALUE lines from it. With `WatchdogSec=` it also sets
$WATCHDOG_USEC (and $WATCHDOG_PID, the process meant) and kills and restarts the service when no
`WATCHDOG=1` arrives within that time. fer-edge sends:

    READY=1       once the model, the source and every output are open (systemctl start returns then)
    WATCHDOG=1    from the frame loop, only when a frame has been processed (at most every WATCHDOG_USEC / 4),
                  so a pipeline wedged in a driver, or a camera that stays stalled, gets the service restarted
    STOPPING=1    when the run is asked to stop (SIGTERM), before outputs are flushed

Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
"""
from __future__ import annotations

import logging
import os
import socket
import time

from fer_edge.runtime.media.sinks import Sink

log = logging.getLogger("fer_edge.runtime")


class Notifier:
    """Sends sd_notify messages to $NOTIFY_SOCKET; a no-op when it is unset."""

    def __init__(self, environ: dict | None = None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        # ping at a quarter of the timeout (systemd's advice: at least twice per period); 1 s without one
        self.every_s = self.watchdog_s / 4 if self.watchdog_s else 1.0
        self.last_ping = 0.0
        self.sent: list[str] = []  # what was sent, for the log line at the end and for tests
        self.failed = 0

    @property
    def active(self) -> bool:
        return bool(self.address)

    def send(self, message: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message.encode(), self.address)
        except OSError as exc:  # systemd gone or the socket not ours: never a reason to stop the run
            if not self.failed:  # once: a broken socket would otherwise log every second for months
                log.warning("sd_notify %s: %s", message.split("\n", 1)[0], exc)
            self.failed += 1
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def ping(self) -> bool:
        """WATCHDOG=1, at most every `every_s` seconds; returns whether one was sent."""
        now = time.monotonic()
        if not self.address or now - self.last_ping < self.every_s:
            return False
        self.last_ping = now
        return self.send("WATCHDOG=1")


class WatchdogSink(Sink):
    """A sink that pings the watchdog for each processed frame: the frame loop is alive exactly when frames
    reach the sinks, so a stalled source or a wedged detector stops the pings. finish() says STOPPING=1."""

    def __init__(self, notifier: Notifier):
        self.notifier = notifier

    def write(self, frame, result) -> None:
        self.notifier.ping()

    def finish(self, commit: bool) -> None:
        self.notifier.stopping()
