"""Progress bars on stderr for work of known length (a video file, a folder, verify, fer-eval, calibration,
the INT8 recipe search, training epochs), one small class used by every tool.

    with Progress(total=len(files), what="photos") as bar:
        for f in files:
            ...
            bar.update()              # or bar.update_to(position)

Drawn only on a terminal (stderr is a tty) and only for a known, positive total; `quiet=True` (--quiet), a
pipe, a log file or a live source (no total) draw nothing, so machine output stays clean. Redraws are
rate-limited (at most `REDRAWS_PER_S` a second): an update between redraws costs one clock read. One bar is
shown at a time: work nested in a shown bar (calibration passes inside the recipe search) keeps its own hidden.
A tool that prints a line while a bar may be shown calls `clear_line()` first; the bar is redrawn below it.
"""
from __future__ import annotations

import logging
import sys
import time
import weakref

REDRAWS_PER_S = 10  # a bar that moves ten times a second looks live; more is wasted terminal writes
WIDTH = 28  # characters of the bar itself


def _no_bar() -> None:
    return None


_shown = _no_bar  # a weak reference to the bar on the terminal now (a bar dropped unclosed frees its place)


def clear_line() -> None:
    """Clear the bar on the terminal (if any) so that a line can be printed; the next update redraws it."""
    bar = _shown()
    if bar is not None and bar.drawn:
        bar.stream.write("\r\x1b[K")
        bar.stream.flush()
        bar.next_draw = 0.0


def _clock(seconds: float) -> str:
    s = int(max(0.0, seconds) + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """A bar `what  42% |#####-----| 420/1000 frames  35.2/s  0:16 left` on stderr, redrawn in place."""

    def __init__(self, total: int | None, what: str = "", unit: str = "", quiet: bool = False, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.total = int(total) if total else 0
        self.what, self.unit = what, unit
        self.done = 0
        self.on = self.total > 0 and not quiet and _shown() is None and _is_terminal(self.stream)
        if self.on:
            _show(self)
        self.started = time.monotonic()
        self.next_draw = 0.0  # the first update draws at once
        self.drawn = False
        encoding = (getattr(self.stream, "encoding", "") or "").lower().replace("-", "")
        self.full, self.empty = ("\u2588", "\u2591") if encoding == "utf8" else ("#", "-")

    def update(self, n: int = 1) -> None:
        self.update_to(self.done + n)

    def update_to(self, done: int) -> None:
        self.done = done
        if not self.on:
            return
        if done >= self.total:  # the work is done: the last state drawn and the line ended now
            self.close()
            return
        now = time.monotonic()
        if now >= self.next_draw:
            self.next_draw = now + 1.0 / REDRAWS_PER_S
            self._draw(now)

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

    def _draw(self, now: float) -> None:
        self.stream.write("\r\x1b[K" + self.line(now))  # \x1b[K: clear what a longer line left behind
        self.stream.flush()
        self.drawn = True

    def close(self, complete: bool = False) -> None:
        """The last state drawn and the line ended; `complete`: the work ended normally, so the bar shows 100%
        even where the total was an estimate (a video's frame count)."""
        started = self.drawn or self.done > 0  # a bar closed before any work leaves no line
        if complete:
            self.done = max(self.done, self.total)
        if self.on:
            if started:
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()
            self.on = False
            _show(None)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(complete=exc_type is None)


class LineHandler(logging.StreamHandler):
    """A logging handler that clears a shown bar before writing its line (the bar is redrawn below it)."""

    def emit(self, record: logging.LogRecord) -> None:
        clear_line()
        super().emit(record)


def _show(bar: Progress | None) -> None:
    global _shown
    _shown = weakref.ref(bar) if bar is not None else _no_bar


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream: no bar
        return False
