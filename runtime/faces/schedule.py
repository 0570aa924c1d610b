"""The stream schedule: pay for what changes (the default for streams; `--full-rate` turns it off).

Per frame, in order:
1. The motion gate (runtime/faces/motion.py) says which parts of the picture moved (~0.1 ms).
2. A full detection of the whole frame runs on the first frame, every `recheck` seconds if the picture outside
   the tracked people changed since the last one (a face that came without motion: lights on, a slow turn into
   view), else every `STILL_RECHECKS` rechecks, and, at most every `recheck * BUSY_EVERY` seconds, while most
   of the picture moves (a camera that moves). When faces come into view, and then every FINE_EVERY rechecks
   while they stay (the picture changed alike), it also searches the frame at the photo width (`fine`), where
   the small faces of a group are found. A still picture searched once is not searched again: the same
   pixels hold the same faces.
3. Otherwise each tracked face whose surroundings moved, or that was last looked for `VERIFY_STILL` frames ago
   (`VERIFY_EVERY` once it was missed), is re-found by the detector around its last box, which keeps its
   landmarks for the framing. A face of at least `GRID_FACE` pixels on the stream copy is re-found on a crop of that copy whose corners lie on the
   detector's coarsest grid (YuNet: 32 px), so its landmarks, and the classifier's crop, are a full
   detection's (`grid_faces`); a smaller one (found at the photo width) on a `REGION`-pixel square.
   A moving face is followed by its picture (template matching, `FOLLOW`) and re-found by the detector once
   every `FOLLOW_RUN` + 1 frames (following drifts: its landmarks move with the box only); a face whose label
   was a near tie (`UNSURE`) is re-found and classified on every frame. A moving track not re-found counts a
   miss and is dropped after `max_missed` misses, as with full detections.
4. Moving pixels outside the tracked faces (someone walking in) are searched, on a crop around them, at the
   photo width's scale.
5. A face is classified again when it moved, when its probabilities changed at its last classification, when
   its top two were a near tie, or when it has held them for `HOLD` frames and its crop changed (`crop_change`
   above `CROP_CHANGE` grey levels), for `HOLD_MAX` frames and its crop changed more than sensor noise does
   (`CROP_STILL`), or for `HOLD_MAX * STILL_RECHECKS` frames; in between its last probabilities are reported,
   and a face held fewer than HOLD frames is not even cut.
The stream copy is the frame shrunk by the whole factor nearest the stream width (`whole_factor`: 596 px -> 298,
640 -> 320), so it and its parts are area-averaged by OpenCV's fast path.
Still images (photos, folders, `--image`) never come here: each gets a full detection.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from fer_edge.runtime.core.boxes import FaceBox, expand_box, iou, scale_faces
from fer_edge.runtime.faces.detectors import detect_at
from fer_edge.runtime.faces.motion import MotionGate
from fer_edge.runtime.faces.tracking import follow_box

DEFAULT_RECHECK = 2.0  # seconds between full detections of a still scene
REGION = 96  # side in detector pixels of the square a tracked face is re-found in
REGION_SIDES = 2.0  # that square's side, in face sides
GRID_FACE = 40  # a face at least this many pixels on the stream copy is re-found on a crop of that copy (grid_faces)
GRID_SIDES = 1.2  # that crop's side before it is moved out to the detector's stride, in face sides
VERIFY_EVERY = 5  # frames a still face not re-found at its last look waits before it is looked for again
VERIFY_STILL = 15  # ... and one re-found there (a face that leaves moves, and motion looks for it at once)
FOLLOW = True  # between two re-findings of a moving face, follow its picture (template matching, ~0.1 ms)
FOLLOW_RUN = 3  # frames in a row a moving face may be followed by its picture (benchmarks/scene_cost.md)
HOLD = 3  # frames a face keeps its probabilities before it is classified again, if its crop changed (CROP_CHANGE)
MOVED = 0.08  # a face whose box moved more than this share of its side since its classification moved
HOLD_MAX = 15  # frames after which a crop that changed more than noise (CROP_STILL) is classified again
CROP_CHANGE = 4.0  # grey levels (crop_change) below which a crop is unchanged (benchmarks/crop_change.md)
CROP_STILL = 2.0  # ... and below which it changed by sensor noise only (a still face; benchmarks/crop_change.md)
UNSURE = 0.05  # top two probabilities closer than this at the last classification: re-find and classify every frame
CHANGED = 0.1  # a probability that changed by more than this at a classification: classify the next frame too
TRACK_MARGIN = 0.5  # motion this far (in face sides) around a tracked face means it moved
BUSY = 0.25  # more than this share of the picture around the people moving: the camera or the light moved
BUSY_EVERY = 0.5  # ... then a full detection runs every recheck * BUSY_EVERY seconds at most
PRINT = 24  # side of the small copy of a face's crop that crop_change compares
FINE_EVERY = 4  # rechecks between searches at the photo width while faces are in view
STILL_RECHECKS = 10  # a picture that did not change is searched again after this many rechecks all the same


@dataclass
class Step:
    """What the schedule ran on one frame."""
    full: bool = False  # the whole frame searched
    fine: bool = False  # ... at the photo width
    regions: int = 0  # tracked faces looked for around their last box
    region_pixels: int = 0  # ... the detector's input pixels for them (padded to its stride), for multiply-adds
    motion: int = 0  # moving areas outside the faces searched
    checked: set = field(default_factory=set)  # ids of the tracks looked for

    def counts(self) -> dict:
        return {"full_detections": int(self.full), "fine_detections": int(self.fine), "region_detections":
                self.regions, "region_pixels": self.region_pixels, "motion_searches": self.motion,
                "frames_skipped": int(not (self.full or self.regions or self.motion))}


@dataclass
class Seen:
    """A track's schedule state."""
    looked: int  # frame it was last looked for
    followed: int = -1  # frame it was last followed by its picture
    classified: int = -1_000_000  # frame it was last classified
    box: tuple | None = None  # its box then
    classified_print: np.ndarray | None = None  # its crop then (crop_print)
    print: np.ndarray | None = None  # its crop on this frame
    raw: np.ndarray | None = None  # the classifier's answer then
    changing: bool = True
    unsure: bool = True  # its label was a near tie at its last classification (UNSURE)
    fine: bool = False  # re-found only at the photo width: looked for there (Schedule.refind)
    snapshot: np.ndarray | None = None  # the motion gate's small copy when it was last looked for


class Schedule:
    def __init__(self, detector, region_detector, widths: tuple[int | None, int | None],
                 recheck: float = DEFAULT_RECHECK):
        self.detector, self.region_detector = detector, region_detector
        self.stream_width, self.fine_width = widths
        self.width = self.stream_width  # the stream width for this frame's size (whole_factor)
        self.recheck = recheck
        self.gate = MotionGate()
        self.reset()

    def reset(self) -> None:
        self.gate.reset()
        self.frame_no, self.last_full, self.last_fine, self.t0 = -1, None, None, None
        self.full_snapshot = self.fine_snapshot = None  # the motion gate's small copy at those searches
        self.prev_gray: np.ndarray | None = None
        self.seen: dict[int, Seen] = {}

    def clock(self, t: float) -> float:
        """Seconds on the source's clock (media time), or the wall clock where the caller gives none."""
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        return t if t > 0 else now - self.t0

    # -- detection ----------------------------------------------------------------------------------

    def detect(self, frame: np.ndarray, gray: np.ndarray, tracks: list, t: float) -> tuple[list[FaceBox], Step]:
        """Boxes found on this frame and what ran to find them (step.checked: the tracks looked for)."""
        self.frame_no += 1
        self.width = whole_factor(frame.shape[1], self.stream_width)
        now = self.clock(t)
        prev, self.prev_gray = self.prev_gray, gray
        mask = self.gate.update(gray)
        grown = [expand_box(tr.box.box, TRACK_MARGIN, frame.shape) for tr in tracks]
        bodies = [body(tr.box.box) for tr in tracks]
        rest = self.gate.outside(mask, bodies)
        busy = bool(rest.any()) and rest.sum() > BUSY * max(1, self.gate.outside(np.ones_like(mask), bodies).sum())
        looks = {tr.id: self._look(tr, mask, g) for tr, g in zip(tracks, grown)}
        if self._full_due(now, busy, bodies) or (tracks and self._fine_due(now, bodies)):
            return self.full(frame, gray, tracks, now, {i for i, moved in looks.items() if moved})
        step = Step()
        follow = {tr.id for tr in tracks if looks[tr.id] and self._followable(tr, prev, gray)}
        boxes = self.refind(frame, gray, [tr for tr in tracks if looks[tr.id] is not None and tr.id not in follow],
                            step)
        followed = {tr.id: follow_box(prev, gray, tr.box) for tr in tracks if tr.id in follow}
        for tr in tracks:
            if followed.get(tr.id) is not None:
                self._seen(tr).followed = self.frame_no
        boxes += [b for b in followed.values() if b is not None]
        # a face looked for and not re-found counts a miss (still ones too: a face that left a still scene must
        # end, or its visit never would), and one followed by its picture only when the picture was lost
        step.checked = {i for i, look in looks.items() if look is not None and followed.get(i) is None}
        if self.gate.moving(rest) and not busy:
            boxes += self.search(frame, gray, self.gate.rect(rest))
            step.motion = 1
        return dedupe(boxes), step

    def _followable(self, track, prev, gray) -> bool:
        """A moving face re-found or followed on the previous frame is followed by its picture on this one (FOLLOW),
        FOLLOW_RUN frames in a row at most."""
        seen = self._seen(track)  # a face missed at its last look is not followed: its picture may be the wall
        return (FOLLOW and prev is not None and prev.shape == gray.shape and not seen.unsure and not track.missed
                and self.frame_no - 1 in (seen.looked, seen.followed) and self.frame_no - seen.looked <= FOLLOW_RUN)

    def _full_due(self, now: float, busy: bool, bodies: list) -> bool:
        if self.last_full is None or now < self.last_full:
            return True
        return ((busy and now - self.last_full >= self.recheck * BUSY_EVERY)
                or self._due(now - self.last_full, self.recheck, self.full_snapshot, bodies))

    def _fine_due(self, now: float, bodies: list) -> bool:
        return (self.last_fine is None or now < self.last_fine
                or self._due(now - self.last_fine, self.recheck * FINE_EVERY, self.fine_snapshot, bodies))

    def _due(self, since: float, every: float, snapshot, bodies: list) -> bool:
        """A search last run `since` seconds ago, due every `every` seconds where the picture outside the tracked
        people changed since (the motion gate's small copy then: `snapshot`), else every STILL_RECHECKS times."""
        return since >= every and (since >= every * STILL_RECHECKS or self.gate.changed_since(snapshot, bodies))

    def full(self, frame, gray, tracks, now, moved: set) -> tuple[list[FaceBox], Step]:
        """The whole frame; at the photo width while faces are in view (on the frame where the first faces
        are found, then every FINE_EVERY rechecks). A still face that the stream width cannot see (found at
        the photo width) is not lost by it: only a search at the photo width or a moving face counts misses."""
        fine_due = self._fine_due(now, [body(tr.box.box) for tr in tracks])
        fine = bool(tracks) and fine_due
        boxes = detect_at(self.detector, frame, gray, self.fine_width if fine else self.width)
        if not fine and boxes and fine_due:  # faces in view for the first time: small ones beside?
            fine = True
            boxes = dedupe(boxes + detect_at(self.detector, frame, gray, self.fine_width))
        self.last_full, self.full_snapshot = now, self.gate.current
        if fine:
            self.last_fine, self.fine_snapshot = now, self.gate.current
        step = Step(full=True, fine=fine and self.fine_width != self.width,
                    checked={tr.id for tr in tracks} if fine else moved)
        for tr in tracks:
            self._looked(self._seen(tr))
        return boxes, step

    def _look(self, track, mask: np.ndarray, grown: tuple) -> bool | None:
        """Look for this face now? True: its surroundings moved; False: it is still but was last looked for
        VERIFY_EVERY frames ago once missed, or VERIFY_STILL frames ago and its surroundings changed since (slowly:
        the same pixels hold the same face) or STILL_RECHECKS times that; None: not now."""
        seen = self._seen(track)
        if self.gate.moving(self.gate.within(mask, grown)):
            return True
        since = self.frame_no - seen.looked
        if seen.unsure or (track.missed and since >= VERIFY_EVERY):
            return False
        if since >= VERIFY_STILL and (since >= VERIFY_STILL * STILL_RECHECKS
                                      or self.gate.changed_since(seen.snapshot, within=grown)):
            return False
        return None

    def refind(self, frame, gray, tracks: list, step: Step) -> list[FaceBox]:
        """Each face looked for around its last box (`_region`); the box nearest the old one kept. A face the
        stream width misses is looked for again at the photo width before it counts a miss: the photo-width
        search finds faces the stream copy cannot see (a big face cut by the frame's edge), and such a face is
        looked for at the photo width from then on (`Seen.fine`)."""
        out = []
        for tr in tracks:
            seen = self._seen(tr)
            self._looked(seen)
            best = self._nearest(frame, gray, tr.box, seen.fine, step)
            if best is None and not seen.fine and self._finer(frame):
                best = self._nearest(frame, gray, tr.box, True, step)
                seen.fine = best is not None
            if best is not None:
                out.append(best)
        return out

    def _looked(self, seen: Seen) -> None:
        seen.looked, seen.snapshot = self.frame_no, self.gate.current

    def _nearest(self, frame, gray, box: FaceBox, fine: bool, step: Step) -> FaceBox | None:
        """The face re-found nearest `box` (None: none overlaps it), at the stream or the photo width."""
        step.regions += 1
        found, pixels = self._region(frame, gray, box, self.fine_width if fine else self.width)
        step.region_pixels += pixels
        best = max(found, key=lambda b: iou(b.box, box.box), default=None)
        return best if best is not None and iou(best.box, box.box) > 0.1 else None

    def _finer(self, frame) -> bool:
        """Does the photo width see more of this frame than the stream width?"""
        return min(self.fine_width or frame.shape[1], frame.shape[1]) > min(self.width or frame.shape[1],
                                                                            frame.shape[1])

    def _region(self, frame, gray, box: FaceBox, width: int | None) -> tuple[list[FaceBox], int]:
        """A face re-found on a grid-aligned crop of the copy shrunk to `width` where the detector has a stride and
        the face is big enough there (its landmarks then match a full detection's), else on a REGION square; and
        the detector's input pixels."""
        stride, width = getattr(self.region_detector, "STRIDE", None), min(width or frame.shape[1], frame.shape[1])
        if stride and max(box.w, box.h) * width / frame.shape[1] >= GRID_FACE:
            return grid_faces(self.region_detector, frame, width, box, stride)
        return region_faces(self.region_detector, frame, gray, box), REGION * REGION

    def search(self, frame, gray, rect: tuple[int, int, int, int]) -> list[FaceBox]:
        """Faces in a moving area (grown by half its size), at the photo width's scale, or smaller where that
        would cost more than a detection of the whole frame."""
        x, y, w, h = expand_box(rect, 0.5, frame.shape)
        fine = self.fine_width / frame.shape[1] if self.fine_width and frame.shape[1] > self.fine_width else 1.0
        stream = self.width / frame.shape[1] if self.width and frame.shape[1] > self.width else 1.0
        fine = min(fine, max(stream, (frame.shape[0] * frame.shape[1] * stream * stream / (w * h)) ** 0.5))
        crop, crop_gray = frame[y:y + h, x:x + w], gray[y:y + h, x:x + w]
        faces = detect_at(self.detector, crop, crop_gray, max(1, round(w * fine)))
        return [m for m in (f.moved(x, y, frame.shape) for f in faces) if m is not None]

    # -- classification -----------------------------------------------------------------------------

    def _seen(self, track) -> Seen:
        if track.id not in self.seen:
            self.seen[track.id] = Seen(looked=self.frame_no)
        return self.seen[track.id]

    def to_classify(self, tracks: list, cut) -> tuple[list, list]:
        """The faces to classify on this frame and their crops (the others keep their probabilities). `cut(tracks)`
        gives crops as the classifier would see them; only faces that may be due are cut (step 5)."""
        live = {tr.id for tr in tracks}
        for gone in [i for i in self.seen if i not in live]:
            del self.seen[gone]
        above = {tr.id: self._above(tr) for tr in tracks}
        maybe = [tr for tr in tracks if above[tr.id] is not None]
        out, crops = [], []
        for tr, crop in zip(maybe, cut(maybe) if maybe else []):
            s = self._seen(tr)
            s.print = crop_print(crop)
            if s.classified_print is None or crop_change(s.classified_print, s.print) > above[tr.id]:
                out.append(tr)
                crops.append(crop)
        return out, crops

    def _above(self, track) -> float | None:
        """The crop change above which this face is classified on this frame: any (-1) when it is new, moved,
        changing or unsure, or held HOLD_MAX * STILL_RECHECKS frames; CROP_CHANGE once held HOLD frames,
        CROP_STILL (more than noise) once held HOLD_MAX, every HOLD frames; None: not now (its crop is not even cut)."""
        s = self._seen(track)
        held = self.frame_no - s.classified
        if (track.probs is None or s.box is None or _shift(s.box, track.box.box) > MOVED or s.changing or s.unsure
                or held >= HOLD_MAX * STILL_RECHECKS):
            return -1.0
        if held >= HOLD_MAX:  # a still face's crop is compared every HOLD frames only
            return CROP_STILL if (held - HOLD_MAX) % HOLD == 0 else None
        return CROP_CHANGE if held >= HOLD else None

    def classified(self, track, raw: np.ndarray) -> None:
        s = self._seen(track)
        s.changing = s.raw is None or float(np.abs(raw - s.raw).max()) > CHANGED
        s.classified, s.classified_print, s.raw = self.frame_no, s.print, raw
        s.box = track.box.box
        top = np.sort(np.asarray(raw, np.float32))[-2:]
        s.unsure = len(top) == 2 and float(top[1] - top[0]) < UNSURE


def whole_factor(frame_width: int, width: int | None) -> int | None:
    """The width nearest `width` that divides the frame's by a whole number: the copy is then area-averaged by
    OpenCV's fast path, and a part of it (shrunk_part) is shrunk from only the pixels under it."""
    if not width or frame_width <= width:
        return width
    return frame_width // max(1, round(frame_width / width))


def crop_print(crop: np.ndarray) -> np.ndarray:
    """A face's crop (as the classifier is handed it) shrunk to PRINT pixels a side, grey, as float32: what
    `crop_change` compares."""
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return cv2.resize(crop, (PRINT, PRINT), interpolation=cv2.INTER_AREA).astype(np.float32)


def crop_change(a: np.ndarray, b: np.ndarray) -> float:
    """How much a face's crop changed: the mean absolute difference of two `crop_print`s, in grey levels."""
    return float(cv2.norm(a, b, cv2.NORM_L1)) / a.size


def _shift(a: tuple, b: tuple) -> float:
    """How far box b is from box a, in a's side: the largest move of an edge."""
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(a[0] + a[2] - b[0] - b[2]),
               abs(a[1] + a[3] - b[1] - b[3])) / max(a[2], a[3], 1)


def body(box: tuple) -> tuple:
    """Where a face's person moves: a face side either side, half above, three below (shoulders, hands)."""
    x, y, w, h = box
    return x - w, y - h // 2, 3 * w, 4 * h


def region_faces(detector, frame: np.ndarray, gray: np.ndarray, box: FaceBox) -> list[FaceBox]:
    """Faces on a square REGION_SIDES face sides wide around `box`, shrunk or enlarged to REGION pixels and
    padded at the frame's edge (one input size for every face: the detector never reallocates)."""
    x, y, w, h = box.box
    side = REGION_SIDES * max(w, h)
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    x1, y1 = int(round(x0 + side)), int(round(y0 + side))
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(frame.shape[1], x1), min(frame.shape[0], y1)
    if cx1 - cx0 < 8 or cy1 - cy0 < 8:
        return []
    region = REGION
    scale = region / side
    size = (max(1, round((cx1 - cx0) * scale)), max(1, round((cy1 - cy0) * scale)))
    crop = shrink(frame[cy0:cy1, cx0:cx1], size)
    left, top = round((cx0 - x0) * scale), round((cy0 - y0) * scale)
    pad = (top, max(0, region - top - size[1]), left, max(0, region - left - size[0]))
    crop = cv2.copyMakeBorder(crop, *pad, cv2.BORDER_CONSTANT)[:region, :region]
    crop_gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if getattr(detector, "GRAY", True) else None
    faces = scale_faces(detector.detect(crop, crop_gray), 1.0 / scale, (10 ** 6, 10 ** 6))
    dx, dy = x0, y0
    return [m for m in (f.moved(dx, dy, frame.shape) for f in faces) if m is not None]


def grid_faces(detector, frame: np.ndarray, width: int, box: FaceBox, stride: int) -> tuple[list[FaceBox], int]:
    """Faces on a crop of the frame as a full detection shrinks it (to `width`), around `box`, GRID_SIDES face
    sides wide, its corners moved out to multiples of the detector's stride: a fully convolutional detector then
    sees the face on the same grid as on the whole copy, so its landmarks (the framing) match a full detection's
    (measured on the sample video: 1 px median difference, against 10 on a REGION square). Also the
    detector's input pixels (the crop padded to the stride, as the detector pads it)."""
    scale = width / frame.shape[1]
    x, y, w, h = (v * scale for v in box.box)
    half = GRID_SIDES * max(w, h) / 2
    x0, y0 = max(0, int((x + w / 2 - half) // stride) * stride), max(0, int((y + h / 2 - half) // stride) * stride)
    x1, y1 = -int(-(x + w / 2 + half) // stride) * stride, -int(-(y + h / 2 + half) // stride) * stride
    crop = np.ascontiguousarray(shrunk_part(frame, width, x0, y0, x1, y1))
    if min(crop.shape[:2]) < 8:
        return [], 0
    shape = (round(frame.shape[0] * scale), width)
    faces = [m for m in (f.moved(x0, y0, shape) for f in detector.detect(crop, None)) if m is not None]
    pixels = -(-crop.shape[0] // stride) * stride * -(-crop.shape[1] // stride) * stride
    return scale_faces(faces, 1.0 / scale, frame.shape), pixels


def shrunk_part(frame: np.ndarray, width: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Pixels [y0:y1, x0:x1] of the frame shrunk to `width` (INTER_AREA, as detect_at does), resized from only the
    frame pixels they need: area cells repeat every q shrunk pixels (p frame pixels), so a part starting at a
    multiple of q is exactly that part of the whole copy, at a fraction of its cost."""
    g = math.gcd(frame.shape[1], width)
    p, q = frame.shape[1] // g, width // g
    sx0, sy0 = x0 // q * q, y0 // q * q
    sx1, sy1 = min(frame.shape[1], -(-x1 // q) * p), min(frame.shape[0], -(-y1 // q) * p)
    scale = width / frame.shape[1]
    part = cv2.resize(frame[sy0 // q * p:sy1, sx0 // q * p:sx1], None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_AREA)
    return part[y0 - sy0:y1 - sy0, x0 - sx0:x1 - sx0]


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` resized to `size`: averaged by a whole factor first (OpenCV's fast path), then interpolated."""
    k = min(image.shape[1] // size[0], image.shape[0] // size[1])
    if k >= 2:
        h, w = image.shape[0] // k * k, image.shape[1] // k * k
        image = cv2.resize(image[:h, :w], (w // k, h // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def dedupe(boxes: list[FaceBox], threshold: float = 0.5) -> list[FaceBox]:
    """One box per face where two searches found it (the higher score kept)."""
    out: list[FaceBox] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        if all(iou(b.box, o.box) <= threshold for o in out):
            out.append(b)
    return out
