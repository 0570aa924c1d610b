"""Detectors, the frame loop's detection step, face framing and drawing, without the data folder.

The YuNet file shipped in the package is real; faces are synthetic (boxes and landmarks given), so these
tests hold wherever the runtime is installed, OpenCV 4.x or 5.x.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.runtime.media import drawing
from fer_edge.runtime.core.boxes import FaceBox, scale_faces
from fer_edge.runtime.cli import main
from fer_edge.runtime.faces.detectors import DETECTORS, HaarDetector, YuNetDetector, make_detector
from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.fileio import sha256_file
from fer_edge.runtime.faces.framing import FER2013, Framing, align_matrix, face_crops
from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions
from fer_edge.runtime.model.preprocess import PreprocessSpec
from fer_edge.runtime.model.shipped import shipped_file
from fer_edge.runtime.media.sinks import RecordSink
from fer_edge.runtime.media.sources import Frame

ROOT = Path(__file__).resolve().parents[1]
TFLITE = ROOT / "tests" / "assets" / "tiny_fer.tflite"
YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"  # OpenCV model zoo's file


def test_shipped_yunet_is_the_model_zoo_file_with_its_licence_and_provenance():
    path = shipped_file(YuNetDetector.FILE)
    assert path is not None and sha256_file(path) == YUNET_SHA256
    licence = (path.parent / "LICENSE-yunet.txt").read_text()
    assert "MIT License" in licence and "Shiqi Yu" in licence
    notice = (path.parent / "NOTICE.md").read_text()
    assert YuNetDetector.FILE in notice and YUNET_SHA256 in notice


def test_yunet_finds_no_face_in_noise_and_returns_a_list():
    det = make_detector("yunet")
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    assert det.detect(frame, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) == []


def test_recognizer_from_python_prints_nothing_on_stderr_and_leaves_opencvs_log_level():
    """OpenCV 5 warns "Targets are not supported by the new graph engine" when YuNet is made; a Recognizer built
    from Python (no CLI to quiet OpenCV) must not print it, nor change the caller's OpenCV log level for good.
    (Under OpenCV 4 there is nothing to print; CI's OpenCV 5 leg runs this file.)"""
    import subprocess
    import sys

    script = ("import numpy as np\nfrom cv2.utils import logging as L\nfrom fer_edge import Recognizer\n"
              "L.setLogLevel(L.LOG_LEVEL_WARNING)\nwith Recognizer(model=%r) as rec:\n"
              "    print(len(rec.analyze(np.zeros((240, 320, 3), np.uint8))), L.getLogLevel() == L.LOG_LEVEL_WARNING)\n"
              % str(TFLITE))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in __import__("os").environ.items() if k != "OPENCV_LOG_LEVEL"})
    assert proc.returncode == 0, proc.stderr
    # under qemu-user (CI's aarch64 leg) /sys has no CPU lists and the interpreter's cpuinfo library says so at
    # load: the emulator's words, not fer-edge's or OpenCV's; on a real board they are not printed
    printed = [line for line in proc.stderr.splitlines() if not line.startswith("Error in cpuinfo: failed to parse")]
    assert proc.stdout.split() == ["0", "True"] and printed == [], (cv2.__version__, proc.stderr)


def test_every_detector_declares_its_options_and_others_are_refused():
    assert set(DETECTORS) == {"yunet", "haar", "blazeface"}
    for cls in DETECTORS.values():
        assert isinstance(cls.OPTIONS, dict) and len(cls.SIZES) == 2
    with pytest.raises(FerEdgeError, match=r"--detector haar does not take --detect-score"):
        make_detector("haar", score=0.5)
    with pytest.raises(FerEdgeError, match=r"--detect-nms must be between 0 and 1, found 1.5"):
        make_detector("yunet", nms=1.5)


def test_cli_refuses_a_detector_option_the_detector_does_not_take(capsys):
    assert main(["--image", "x.jpg", "--detector", "haar", "--detect-score", "0.5", "--model", str(TFLITE)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not take --detect-score" in err[0]


def test_haar_on_an_opencv_without_cascades_is_a_clear_error(monkeypatch):
    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    with pytest.raises(FerEdgeError, match="no Haar cascades .OpenCV 5 removed them.: use the default --detector yunet"):
        HaarDetector()


def test_boxes_and_landmarks_found_on_a_small_copy_map_back():
    small = [FaceBox(10, 20, 30, 40, 0.9, ((15.0, 30.0), (30.0, 30.0), (22.0, 40.0), (17.0, 50.0), (28.0, 50.0)))]
    (big,) = scale_faces(small, 4.0, (400, 400))
    assert big.box == (40, 80, 120, 160) and big.score == 0.9
    assert big.landmarks[0] == (60.0, 120.0) and big.landmarks[4] == (112.0, 200.0)
    moved = big.moved(5, -10, (400, 400))
    assert moved.box == (45, 70, 120, 160) and moved.landmarks[0] == (65.0, 110.0)


class RecordingDetector:
    """Boxes in the coordinates of the image it is given; remembers what it was handed."""

    name, OPTIONS, SIZES = "recording", {}, (100, 200)

    def __init__(self):
        self.seen = []

    def detect(self, frame, gray):
        self.seen.append((frame.shape, gray.shape, int(gray[0, 0])))
        return [FaceBox(10, 10, 20, 20)]

    def close(self):
        pass


def test_detection_runs_on_a_copy_at_the_detect_size_of_streams_and_photos():
    frame = np.full((300, 400, 3), 90, np.uint8)
    with Pipeline(PipelineOptions(model=TFLITE)) as p:
        p.detector = det = RecordingDetector()
        stream = p.process(frame)
        photo = p.process_image(frame)
    # streams at the detector's first size (100 px wide), photos at its second (200), grey made once; a stream
    # frame where faces come into view is searched again at the photo size for small ones (runtime/faces/schedule.py)
    assert det.seen == [((75, 100, 3), (75, 100), 90), ((150, 200, 3), (150, 200), 90),
                        ((150, 200, 3), (150, 200), 90)]
    assert stream.faces[0].box == (40, 40, 80, 80) and photo.faces[0].box == (20, 20, 40, 40)
    with Pipeline(PipelineOptions(model=TFLITE, detect_size=400)) as p:
        p.detector = det = RecordingDetector()
        assert p.process(frame).faces[0].box == (10, 10, 20, 20) and det.seen[0][0] == (300, 400, 3)


def test_fer2013_framing_puts_the_eyes_where_fer2013_has_them():
    """A face tilted by 20 degrees: after framing the eyes are level, at FER2013's place and distance."""
    eyes = Framing(size_from="eyes", level_beyond=0.0)
    cx, cy, d, a = 200.0, 150.0, 60.0, math.radians(20)
    right = (cx - d / 2 * math.cos(a), cy - d / 2 * math.sin(a))
    left = (cx + d / 2 * math.cos(a), cy + d / 2 * math.sin(a))
    down = (-math.sin(a), math.cos(a))  # towards the mouth, perpendicular to the eye line
    mouth = (cx + 61 * down[0], cy + 61 * down[1])
    lms = (right, left, mouth, mouth, mouth)
    m = align_matrix(lms, eyes, 48, 48)
    out = [m @ np.array([x, y, 1.0]) for x, y in (right, left)]
    np.testing.assert_allclose(out[0], [48 * (eyes.eye_x - eyes.eye_dist / 2), 48 * eyes.eye_y], atol=1e-6)
    np.testing.assert_allclose(out[1], [48 * (eyes.eye_x + eyes.eye_dist / 2), 48 * eyes.eye_y], atol=1e-6)
    # FER2013's framing turns only the tilt beyond its own (4 degrees): 16 of the 20 here
    m = align_matrix(lms, FER2013, 48, 48)
    (rx, ry), (lx, ly) = [m @ np.array([x, y, 1.0]) for x, y in (right, left)]
    assert math.degrees(math.atan2(ly - ry, lx - rx)) == pytest.approx(FER2013.level_beyond, abs=1e-6)
    # the same on real pixels: two bright eyes drawn into a frame come out nearly level, where FER2013 has them
    frame = np.zeros((300, 400), np.uint8)
    for x, y in (right, left):
        cv2.circle(frame, (round(x), round(y)), 3, 255, -1)
    (crop,) = face_crops(frame, [FaceBox(150, 100, 100, 120, 1.0, lms)], PreprocessSpec(), FER2013)
    assert crop.shape[0] == crop.shape[1] >= 48
    ys, xs = np.nonzero(crop > 128)
    assert abs(ys.mean() / crop.shape[0] - FER2013.eye_y) < 0.02 and abs(xs.mean() / crop.shape[1] - FER2013.eye_x) < 0.02
    assert np.ptp(ys) < 0.06 * crop.shape[0]  # levelled: both eyes on one row


def test_faces_without_landmarks_are_cut_at_their_box():
    frame = np.arange(200 * 200, dtype=np.uint32).reshape(200, 200).astype(np.uint8)
    (crop,) = face_crops(frame, [FaceBox(20, 30, 40, 50)], PreprocessSpec(), FER2013)
    np.testing.assert_array_equal(crop, frame[30:80, 20:60])


def test_a_frame_is_drawn_once_for_all_the_outputs_that_show_it(tmp_path, monkeypatch):
    calls = []
    real = drawing.draw
    monkeypatch.setattr(drawing, "draw", lambda *a, **k: calls.append(1) or real(*a, **k))

    class Source:
        stills, fps, reconnects = False, 25.0, 0

        def __iter__(self):
            for i in range(3):
                yield Frame(np.full((120, 160, 3), 60 * i, np.uint8), i, i / 25)

    sinks = [RecordSink(tmp_path / "a.avi", 25.0), RecordSink(tmp_path / "b.png")]
    with Pipeline(PipelineOptions(model=TFLITE)) as p:
        p.run(Source(), sinks)
    assert len(calls) == 3 and (tmp_path / "a.avi").stat().st_size > 0 and (tmp_path / "b.png").is_file()


def test_timeline_without_tracks_says_so():
    image = drawing.draw_timeline({}, ("happy", "sad"))
    assert image.shape[1] == 1000 and (image != 255).any()


def _faces(*boxes, label="happy"):
    from fer_edge.runtime.core.results import FaceResult, FrameResult
    from fer_edge.runtime.model.labels import FER2013

    probs = {name: 0.05 for name in FER2013.labels} | {label: 0.7}
    return FrameResult(0, 0.0, [FaceResult(box, label, probs, track) for track, box in enumerate(boxes, 1)])


def _inside(box):
    x, y, w, h = box
    return slice(y + 4, y + h - 4), slice(x + 4, x + w - 4)


def test_the_tag_goes_above_the_face_or_below_it_never_over_it():
    """On a 640x360 frame: above a face in the middle, below one at the top edge, above one at the bottom
    edge; the face's pixels stay as they were, and the tag is tall enough to read."""
    black = np.zeros((360, 640, 3), np.uint8)
    middle, top, bottom = (100, 150, 80, 80), (300, 0, 80, 90), (480, 270, 80, 90)
    result = _faces(middle, top, bottom)
    placed = drawing.layout(result, 640, 360)
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (middle, top, bottom)]
    for p in placed:
        assert not any(drawing._overlaps(p.tag, b) for b in boxes), f"the tag {p.tag} covers a face"
        assert 0 <= p.tag[0] < p.tag[2] <= 640 and 0 <= p.tag[1] < p.tag[3] <= 360
        assert p.tag[3] - p.tag[1] >= 16, "the tag is too small to read on a 640-wide frame"
    assert placed[0].tag[3] <= middle[1] and placed[1].tag[1] >= top[1] + top[3] and placed[2].tag[3] <= bottom[1]
    out = drawing.draw(black, result)
    for box in (middle, top, bottom):
        assert not out[_inside(box)].any(), f"something drawn over the face at {box}"
    tag = placed[0].tag
    assert (out[tag[1]:tag[3], tag[0]:tag[2]] == drawing.COLOURS[1]).all(axis=2).mean() > 0.3, "no tag drawn"


def test_bars_only_where_a_whole_panel_fits():
    """A face with room beside it gets every class's bar, inside the frame and over no face or tag; a face
    that fills the frame's width gets none (its tag still shows), and nothing covers it."""
    black = np.zeros((360, 640, 3), np.uint8)
    roomy = drawing.layout(_faces((100, 100, 90, 90)), 640, 360)[0]
    assert roomy.panel is not None
    x0, y0, x1, y1 = roomy.panel
    assert 0 <= x0 and x1 <= 640 and 0 <= y0 and y1 <= 360 and (y1 - y0) // len(roomy.face.probs) >= 12
    assert not drawing._overlaps(roomy.panel, (100, 100, 190, 190)) and not drawing._overlaps(roomy.panel, roomy.tag)
    big = (70, 40, 500, 300)  # 70 px free either side: no whole panel fits there
    crowded = drawing.layout(_faces(big), 640, 360)[0]
    assert crowded.panel is None and crowded.tag is not None
    out = drawing.draw(black, _faces(big))
    assert not out[_inside(big)].any() and not out[:, :66].any() and not out[:, 574:].any()
    assert drawing.layout(_faces((100, 100, 90, 90)), 640, 360, bars=False)[0].panel is None


def test_a_face_s_colour_and_text_are_chosen_in_one_place(monkeypatch):
    """face_look decides both (an unsure face: grey, '?'), and draw takes them from it and nowhere else."""
    from dataclasses import replace

    face = _faces((100, 150, 80, 80)).faces[0]
    assert drawing.face_look(face) == (drawing.COLOURS[1], "#1 happy 70%")
    assert drawing.face_look(replace(face, sure=False)) == (drawing.UNSURE, "#1 happy 70% ?")
    grey = (128, 128, 128)
    monkeypatch.setattr(drawing, "face_look", lambda face: (grey, f"#{face.track} ?"))
    result = _faces((100, 150, 80, 80))
    out = drawing.draw(np.zeros((360, 640, 3), np.uint8), result)
    tag = drawing.layout(result, 640, 360)[0].tag
    assert (out[tag[1]:tag[3], tag[0]:tag[2]] == grey).all(axis=2).mean() > 0.3
    assert not (out == drawing.COLOURS[1]).all(axis=2).any(), "a colour was chosen outside face_look"
