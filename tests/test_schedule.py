"""The stream schedule (runtime/faces/schedule.py, runtime/faces/motion.py): pay for what changes, and --full-rate as before."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.runtime.core.boxes import iou
from fer_edge.runtime.cli import main
from fer_edge.runtime.faces.detectors import detect_at, make_detector
from fer_edge.runtime.faces.motion import MotionGate
from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions
from fer_edge.runtime.faces.schedule import (FOLLOW_RUN, STILL_RECHECKS, Schedule, grid_faces, region_faces, shrunk_part,
                                            whole_factor)

ASSETS = Path(__file__).parent / "assets"
TFLITE = ASSETS / "tiny_fer.tflite"
FPS = 15.0


def noisy(image: np.ndarray, rng) -> np.ndarray:
    return np.clip(image + rng.normal(0, 3.0, image.shape), 0, 255).astype(np.uint8)


def room(samples_dir: Path) -> np.ndarray:
    img = cv2.imread(str(samples_dir / "fer_no-faces.jpg"))
    return cv2.resize(img, (640, 476), interpolation=cv2.INTER_CUBIC).astype(np.float64)


def face(samples_dir: Path, side: int = 200) -> np.ndarray:
    return cv2.resize(cv2.imread(str(samples_dir / "fer_justin.jpg")), (side, side), interpolation=cv2.INTER_AREA)


def run(frames, **options) -> tuple[list, Pipeline]:
    with Pipeline(PipelineOptions(model=TFLITE, threads=1, **options)) as p:
        results = [p.process(f, i, i / FPS) for i, f in enumerate(frames)]
    return results, p


# -- the motion gate ------------------------------------------------------------------------------

def test_motion_gate_sleeps_on_a_still_noisy_scene_and_a_light_change_and_wakes_on_motion():
    rng = np.random.default_rng(0)
    scene = rng.integers(40, 200, (48, 64), dtype=np.uint8)
    scene = cv2.resize(scene, (640, 480), interpolation=cv2.INTER_NEAREST).astype(np.float64)
    gate = MotionGate()
    for _ in range(10):
        assert not gate.moving(gate.update(noisy(scene, rng)))
    assert not gate.moving(gate.update(noisy(scene + 25, rng)))  # the light went up a little everywhere
    moved = scene + 25
    moved[200:280, 300:380] = 255 - moved[200:280, 300:380]  # something came into the middle
    mask = gate.update(noisy(moved, rng))
    assert gate.moving(mask)
    x, y, w, h = gate.rect(mask)
    assert 280 <= x <= 310 and 180 <= y <= 210 and 60 <= w <= 110 and 60 <= h <= 110


def test_a_still_empty_scene_is_searched_once_and_again_only_after_still_rechecks(samples_dir):
    rng = np.random.default_rng(1)
    background = room(samples_dir)
    frames = [noisy(background, rng) for _ in range(95)]  # 6.3 s at 15 fps
    results, p = run(frames, recheck=2.0)
    counts = p.stats.schedule
    assert all(r.faces == [] for r in results)
    assert counts["full_detections"] == 1  # the same pixels hold the same faces: none
    assert counts["region_detections"] == counts["motion_searches"] == 0
    assert counts["frames_skipped"] == 94
    recheck = 0.2  # STILL_RECHECKS rechecks = 2 s = 30 frames
    _, p = run(frames[:70], recheck=recheck)
    assert p.stats.schedule["full_detections"] == 1 + int(69 / FPS / (recheck * STILL_RECHECKS))


def test_a_face_that_comes_too_slowly_for_the_motion_gate_is_found_at_the_next_recheck(samples_dir):
    """A face fading in over 8 s (a light coming on slowly, a person turning into view by degrees) changes each
    frame too little for the motion gate, but the picture differs from the one last searched: the recheck runs."""
    rng = np.random.default_rng(7)
    background, person = room(samples_dir), face(samples_dir)
    with_face = background.copy()
    with_face[130:330, 200:400] = person
    frames = [noisy(background, rng) for _ in range(15)]
    frames += [noisy(background + (with_face - background) * min(1.0, (i + 1) / 120), rng) for i in range(150)]
    gate = MotionGate()
    assert not any(gate.moving(gate.update(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))) for f in frames)
    results, p = run(frames, recheck=2.0)
    first = next(i for i, r in enumerate(results) if r.faces)
    assert first <= 15 + 120 + 2 * FPS  # found at a recheck at most one period after it is fully in
    assert all(len(r.faces) == 1 for r in results[first:])


# -- tracking between detections -----------------------------------------------------------------

def test_a_face_moving_across_the_frame_stays_one_track_found_by_region_searches(samples_dir):
    rng = np.random.default_rng(2)
    background, person = room(samples_dir), face(samples_dir)
    frames = []
    for i in range(26):  # left to right, 16 px a frame, within one recheck period
        f = background.copy()
        x = 20 + 16 * i
        f[130:330, x:x + 200] = person
        frames.append(noisy(f, rng))
    results, p = run(frames)
    assert all(len(r.faces) == 1 for r in results)
    assert {r.faces[0].track for r in results} == {1}
    xs = [r.faces[0].box[0] for r in results]
    assert xs[-1] - xs[0] > 300  # it followed the face, not a box left behind
    # frame 0: the whole frame (at the stream and photo widths); then only its region, every FOLLOW_RUN + 1
    # frames (in between its picture is followed)
    assert p.stats.schedule["full_detections"] == 1 and p.stats.schedule["fine_detections"] == 1
    assert 25 // (FOLLOW_RUN + 1) <= p.stats.schedule["region_detections"] <= 25 // (FOLLOW_RUN + 1) + 2


@pytest.mark.parametrize("size", [(596, 336), (640, 476), (1000, 563), (1280, 720)])
def test_a_part_of_the_shrunk_frame_is_exactly_that_part_of_the_whole_shrunk_copy(size):
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    scale = 320 / size[0]
    whole = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    for x0, y0, x1, y1 in [(0, 0, 96, 96), (128, 32, 288, 160), (224, 96, 320, 256), (32, 0, 64, 32)]:
        part = shrunk_part(frame, 320, x0, y0, x1, y1)
        assert part.shape == whole[y0:y1, x0:x1].shape
        assert np.array_equal(part, whole[y0:y1, x0:x1])


def test_the_stream_copy_shrinks_the_frame_by_a_whole_factor():
    assert [whole_factor(w, 320) for w in (596, 640, 1280, 1920, 1000, 320, 200)] == [298, 320, 320, 320, 333, 320, 320]
    assert whole_factor(640, None) is None


def landmark_gap(a, b) -> float:
    return float(np.abs(np.array(a.landmarks) - np.array(b.landmarks)).max())


def test_a_face_re_found_on_the_stride_grid_keeps_the_full_detections_landmarks(samples_dir):
    """The FER2013 framing is cut from the landmarks: a re-found face must have the full detection's."""
    cap = cv2.VideoCapture(str(samples_dir / "fer_test.mp4"))
    frames = [cap.read()[1] for _ in range(31)]
    cap.release()
    detector, regions = make_detector("yunet", threads=1), make_detector("yunet", threads=1)
    full = [detect_at(detector, f, None, 320)[0] for f in frames]
    grid, square = [], []
    for prev, frame, ref in zip(full, frames[1:], full[1:]):  # each face looked for around the previous box
        nearest = lambda found: max(found, key=lambda b: iou(b.box, prev.box))
        grid.append(landmark_gap(nearest(grid_faces(regions, frame, 320, prev, detector.STRIDE)[0]), ref))
        square.append(landmark_gap(nearest(region_faces(regions, frame, None, prev)), ref))
    assert np.median(grid) < 4 and np.median(grid) * 2 < np.median(square)


def test_a_face_whose_label_is_a_near_tie_is_classified_and_re_found_every_frame():
    from fer_edge.runtime.core.boxes import FaceBox
    from fer_edge.runtime.faces.tracking import Track

    schedule = Schedule(None, None, (320, 640))
    sure, tie = Track(1, FaceBox(10, 10, 60, 60)), Track(2, FaceBox(200, 10, 60, 60))
    clear, close = np.array([0.8, 0.1, 0.1]), np.array([0.4, 0.38, 0.22])
    for frame in range(2):  # classified twice alike: the probabilities do not change
        schedule.frame_no = frame
        for tr, raw in ((sure, clear), (tie, close)):
            tr.probs = raw
            schedule.classified(tr, raw)
    schedule.frame_no = 2
    cut = []
    todo, crops = schedule.to_classify([sure, tie],
                                       lambda due: cut.extend(due) or [np.full((48, 48), 100, np.uint8)] * len(due))
    assert todo == [tie] and len(crops) == 1
    assert cut == [tie]  # the sure face, held one frame, is not even cut
    still = np.zeros((10, 10), bool)
    assert schedule._look(sure, still, sure.box.box) is None and schedule._look(tie, still, tie.box.box) is False


def test_a_face_walking_in_is_reported_within_three_frames(samples_dir):
    rng = np.random.default_rng(3)
    background, person = room(samples_dir), face(samples_dir)
    frames = [noisy(background, rng) for _ in range(20)]
    for i in range(12):  # slides in from the left edge, 30 px a frame, then stands
        f = background.copy()
        x = min(-200 + 30 * (i + 1), 150)
        if x + 200 > 0:
            f[130:330, max(x, 0):x + 200] = person[:, max(0, -x):]
        frames.append(noisy(f, rng))
    full, _ = run(frames, full_rate=True)
    scheduled, p = run(frames)
    first = next(i for i, r in enumerate(full) if r.faces)
    assert first > 20
    assert next(i for i, r in enumerate(scheduled) if r.faces) - first <= 3
    # found by searching where it moved (the one full detection after frame 0 looks for small faces beside it)
    assert p.stats.schedule["motion_searches"] >= 1 and p.stats.schedule["full_detections"] == 2


def test_a_still_group_keeps_every_face_a_photo_width_detection_finds_and_a_group_that_left_ends(samples_dir):
    """The selfie as a still 640-wide stream: its big face cut by the edge is found at the photo width only (the
    stream width misses it); region searches must not drop it (issue 45), and faces that leave must still end."""
    rng = np.random.default_rng(6)
    selfie = cv2.imread(str(samples_dir / "deepface_selfie-many-people.jpg"))
    group = cv2.resize(selfie, (640, round(selfie.shape[0] * 640 / selfie.shape[1])), interpolation=cv2.INTER_AREA)
    frames = [noisy(group.astype(np.float64), rng) for _ in range(45)]  # 3 s: region searches between rechecks
    empty = cv2.resize(room(samples_dir), group.shape[1::-1])
    frames += [noisy(empty, rng) for _ in range(30)]  # the group leaves: 2 s of the empty room
    detector = make_detector("yunet", threads=1)
    photo = [len(detect_at(detector, f, None, 640)) for f in frames[:45:11]]
    stream = [len(detect_at(detector, f, None, 320)) for f in frames[:45:11]]
    detector.close()
    assert min(photo) > max(stream)  # the scene holds a face that only the photo width finds
    results, p = run(frames)
    assert [len(r.faces) for r in results[:45]] == [max(photo)] * 45
    assert results[-1].faces == [] and p.tracker.tracks == []


def test_still_faces_hold_their_probabilities_between_classifications(samples_dir):
    rng = np.random.default_rng(4)
    background = room(samples_dir)
    background[130:330, 200:400] = face(samples_dir)
    results, p = run([noisy(background, rng) for _ in range(30)])
    assert all(len(r.faces) == 1 for r in results)
    assert p.stats.schedule["classifications"] < 20  # a still face is not classified on every frame
    with Pipeline(PipelineOptions(model=TFLITE, threads=1, full_rate=True)) as q:
        q.process(background.astype(np.uint8))
        assert q.stats.schedule["classifications"] == 1


def test_a_held_still_face_is_classified_again_for_a_change_beyond_noise_not_for_noise(samples_dir):
    """After HOLD_MAX frames a still face's crop is compared with the one last classified: sensor noise alone
    (below CROP_STILL) classifies nothing, a slow change too small for CROP_CHANGE and for the motion gate (a
    mouth brightening by degrees) does."""
    from fer_edge.runtime.faces.schedule import CROP_CHANGE, CROP_STILL, crop_change, crop_print

    rng = np.random.default_rng(8)
    still = room(samples_dir)
    still[130:330, 200:400] = face(samples_dir)
    changed = still.copy()
    changed[260:290, 270:330] += 30
    frames = [noisy(still, rng) for _ in range(60)]
    frames += [noisy(still + (changed - still) * min(1.0, (i + 1) / 20), rng) for i in range(40)]
    with Pipeline(PipelineOptions(model=TFLITE, threads=1)) as p:
        counts = []
        for i, f in enumerate(frames):
            p.process(f, i, i / FPS)
            counts.append(p.stats.schedule["classifications"])
        box = p.tracker.tracks[0].box
        cut = [crop_print(p._crops(im, cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), [box])[0])
               for im in (still.astype(np.uint8), changed.astype(np.uint8))]
    assert CROP_STILL < crop_change(*cut) < CROP_CHANGE  # the change is the kind this rule is for
    assert counts[59] <= 3  # noise: the first classification and its check, not one every HOLD_MAX (15) frames
    assert counts[-1] > counts[59]  # the slow change: classified again


# -- --full-rate, the CLI ------------------------------------------------------------------------

def test_full_rate_equals_the_output_before_the_schedule(tmp_path, samples_dir):
    """tests/assets/fer_test_before_schedule.jsonl: fer-edge before issue 27 on the sample video (tiny model)."""
    out = tmp_path / "out.jsonl"
    assert main(["--source", str(samples_dir / "fer_test.mp4"), "--model", str(TFLITE), "--threads", "1",
                 "--window", "off", "--quiet", "--json", str(out), "--full-rate"]) == 0
    # issue 38 added "sure" to each face (the tiny model's threshold is 0: every face sure); the rest is unchanged
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(face.pop("sure") is True for doc in docs for face in doc["faces"])
    assert "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in docs) == (
        ASSETS / "fer_test_before_schedule.jsonl").read_text()


def test_summary_says_what_the_schedule_did(tmp_path, samples_dir):
    summary = tmp_path / "summary.json"
    before = time.process_time()
    assert main(["--source", str(samples_dir / "fer_test.mp4"), "--model", str(TFLITE), "--threads", "1",
                 "--window", "off", "--quiet", "--summary", str(summary), "--max-frames", "40"]) == 0
    whole = json.loads(summary.read_text())
    assert 0 < whole["cpu_seconds"] <= time.process_time() - before  # the frame loop's CPU, start-up left out
    s = whole["schedule"]
    assert s["mode"] == "scheduled" and s["full_detections"] >= 1
    assert s["full_detections"] + s["region_detections"] + s["motion_searches"] + s["frames_skipped"] >= 40
    assert s["region_detections"] >= 40 // (FOLLOW_RUN + 1) - 2 and 0 < s["classifications_per_frame"] <= 1


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_bad_recheck_is_one_line_and_exit_2(value, capsys, tmp_path):
    assert main(["--camera", "0", "--model", str(TFLITE), f"--recheck={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--recheck must be a number of seconds above 0" in err and "Traceback" not in err
