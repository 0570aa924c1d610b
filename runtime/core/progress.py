"""Progress bars on stderr for work of known length (a video file, a folder, verify, fer-eval, calibration,
the INT8 recipe search, training epochs), one small class used by every tool.

    with Progress(total=len(files), what="photos") as bar:
        for f in files:
            ...
            bar.update()              # or bar.update_to(position)

Drawn only on a terminal (stderr is a tty) and only for a known, positive total; `quiet=True` (--quiet), a
pipe, a log file or a live source (no total) draw nothing, so machine output stays clean. Redraws are
made by the bar's own thread `REDRAWS_PER_S` times a second: an update only stores a number. One bar is
shown at a time: work nested in a shown bar (calibration passes inside the recipe search) keeps its own hidden.
A line printed while a bar may be shown goes inside `with printing():`; the bar is redrawn below it.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import weakref

REDRAWS_PER_S = 10  # a bar that moves ten times a second looks live; more is wasted terminal writes
WIDTH = 28  # characters of the bar itself


def _no_bar() -> None:
    return None


_shown = _no_bar  # a weak reference to the bar on the terminal now (a bar dropped unclosed frees its place)


@contextlib.contextmanager
def printing():
    """Around a line printed while a bar may be on the terminal: the bar is cleared and held still while the line
    is written, and its next redraw puts it below the line.

        with printing():
            print("step 3 done", file=sys.stderr)
    """
    bar = _shown()
    if bar is None:
        yield
        return
    with bar.lock:
        if bar.on and bar.drawn:
            bar.stream.write("\r\x1b[K")
            bar.stream.flush()
        yield


def _clock(seconds: float) -> str:
    s = int(max(0.0, seconds) + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """A bar `what  42% |#####-----| 420/1000 frames  35.2/s  0:16 left` on stderr, redrawn in place.

    An update only stores the count; a thread of the bar redraws it `REDRAWS_PER_S` times a second, so the work
    never waits for the terminal (a write to a terminal can sleep while the machine is busy)."""

    def __init__(self, total: int | None, what: str = "", unit: str = "", quiet: bool = False, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.total = int(total) if total else 0
        self.what, self.unit = what, unit
        self.done = 0
        self.started = time.monotonic()
        self.drawn = False
        encoding = (getattr(self.stream, "encoding", "") or "").lower().replace("-", "")
        self.full, self.empty = ("\u2588", "\u2591") if encoding == "utf8" else ("#", "-")
        self.lock = threading.RLock()  # one writer of the line at a time: the bar's thread, close(), printing()
        self.stopped = threading.Event()
        self.on = self.total > 0 and not quiet and _shown() is None and _is_terminal(self.stream)
        if self.on:
            _show(self)
            threading.Thread(target=_redraw, args=(weakref.ref(self), self.stopped), name="progress bar",
                             daemon=True).start()

    def update(self, n: int = 1) -> None:
        self.update_to(self.done + n)

    def update_to(self, done: int) -> None:
        self.done = done
        if done >= self.total and self.on:  # the work is done: the last state drawn and the line ended now
            self.close()

    def line(self, now: float | None = None) -> str:
        """The bar as text (what is drawn)."""
        now = time.monotonic() if now is None else now
        done, total = min(self.done, self.total), self.total
        frac = done / total if total else 0.0
        filled = int(frac * WIDTH)
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f"{_clock((total - done) / rate)} left" if rate > 0 and done < total else f"{_clock(elapsed)}"
        unit = f" {self.unit}" if self.unit else ""
        head = f"{self.what} " if self.what else ""
        return (f"{head}{100 * frac:3.0f}% |{self.full * filled}{self.empty * (WIDTH - filled)}| {done}/{total}{unit}"
                f"  {rate:.1f}/s  {left}")

    def draw(self) -> None:
        """Redraw the line now (the bar's thread calls this; so does close)."""
        with self.lock:
            if self.on and (self.done or self.drawn):  # nothing before the first unit of work
                self._write("\r\x1b[K" + self.line())  # \x1b[K: clear what a longer line left behind

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        self.drawn = True

    def close(self, complete: bool = False) -> None:
        """The last state drawn and the line ended; `complete`: the work ended normally, so the bar shows 100%
        even where the total was an estimate (a video's frame count)."""
        if complete:
            self.done = max(self.done, self.total)
        if not self.on:
            return
        self.stopped.set()
        with self.lock:
            if self.done or self.drawn:  # a bar closed before any work leaves no line
                self._write("\r\x1b[K" + self.line() + "\n")
            self.on = False
        _show(None)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(complete=exc_type is None)


def _redraw(ref: "weakref.ref[Progress]", stopped: threading.Event) -> None:
    """The bar's thread: a redraw every 1/REDRAWS_PER_S s until the bar is closed or dropped."""
    while not stopped.wait(1.0 / REDRAWS_PER_S):
        bar = ref()
        if bar is None:
            return
        bar.draw()
        del bar


class LineHandler(logging.StreamHandler):
    """A logging handler that clears a shown bar before writing its line (the bar is redrawn below it)."""

    def emit(self, record: logging.LogRecord) -> None:
        with printing():
            super().emit(record)


def _show(bar: Progress | None) -> None:
    global _shown
    _shown = weakref.ref(bar) if bar is not None else _no_bar


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream: no bar
        return False
