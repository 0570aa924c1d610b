"""In view: whether someone is there, from tracks rather than frames, so it changes when a person comes or goes and
not when the model is unsure of one frame.

    occupancy = Occupancy(hold=3.0)
    changed = occupancy.update(result)     # each FrameResult -> True / False when "in view" changed, else None
    occupancy.in_view                      # the state now; occupancy.figures(): periods and seconds in view

"In view" turns on at the first frame where a track that has had a sure frame is alive, and off once no such track
has been alive for `hold` seconds of the source's time (a face lost for a moment and found again as a new track
keeps it on). Home Assistant's "Face in view", the preview's `in_view` and the summary's `in_view` all follow this
one rule (each FrameResult carries it: `result.in_view`).
"""
from __future__ import annotations

import math

from fer_edge.runtime.core.errors import FerEdgeError

DEFAULT_HOLD = 3.0  # seconds without a sure track before "in view" turns off


def check_hold(hold: float) -> float:
    if not (isinstance(hold, (int, float)) and math.isfinite(hold) and hold >= 0):
        raise FerEdgeError(f"--in-view-hold must be a number of seconds from 0 up, found {hold}")
    return float(hold)


class Occupancy:
    def __init__(self, hold: float = DEFAULT_HOLD):
        self.hold = check_hold(hold)
        self.sure_tracks: set[int] = set()  # alive tracks that have had a sure frame
        self.in_view = False
        self.last_seen = 0.0  # source time of the last frame with a sure track
        self.periods, self.seconds = 0, 0.0  # ON periods, and seconds in view (closed periods)
        self._since = 0.0  # when the current period began

    def update(self, result) -> bool | None:
        """One frame's faces (each with .track and .sure) at result.time: the new state when it changed."""
        alive = {f.track for f in result.faces}
        self.sure_tracks = (self.sure_tracks & alive) | {f.track for f in result.faces if f.sure}
        t = result.time
        if self.sure_tracks:
            self.last_seen = t
            now = True
        else:
            now = self.in_view and t - self.last_seen < self.hold
        if now == self.in_view:
            return None
        self.in_view = now
        if now:
            self.periods, self._since = self.periods + 1, t
        else:
            self.seconds += self.last_seen - self._since
        return now

    def figures(self) -> dict:
        """Periods in view and seconds in view (an open period counts up to its last sure frame)."""
        open_s = self.last_seen - self._since if self.in_view else 0.0
        return {"periods": self.periods, "seconds": round(self.seconds + open_s, 3)}
