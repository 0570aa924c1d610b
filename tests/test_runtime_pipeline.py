"""fer-edge runtime without the data folder: tiny committed models (tests/assets) and synthetic frames.

Nothing here needs TensorFlow: the models were built once by tests/assets/make_tiny_models.py.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.runtime.model.metadata import ModelFlags
from fer_edge.runtime.cli import main
from fer_edge.runtime.core.boxes import FaceBox, drop_nested
from fer_edge.runtime.faces.detectors import blazeface_anchors, weighted_nms
from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions
from fer_edge.runtime.core.results import FaceResult, FrameResult
from fer_edge.runtime.media.sources import Frame, LiveSource, SourceError, open_source
from fer_edge.runtime.faces.tracking import Tracker

ASSETS = Path(__file__).parent / "assets"
TFLITE = ASSETS / "tiny_fer.tflite"
ONNX = ASSETS / "tiny_fer.onnx"


def frames(n: int, shape=(120, 160, 3), seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(n)]


def write_video(path: Path, n: int, size=(160, 120)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    for i, f in enumerate(frames(n, (size[1], size[0], 3))):
        w.write(f)
    w.release()
    return path


class ListSource:
    """A file-like source from a list of images (None = a frame that failed to decode)."""

    live, stills, fps, reconnects = False, False, 25.0, 0

    def __init__(self, images):
        self.images = images
        self.closed = False

    def __iter__(self):
        for i, im in enumerate(self.images):
            yield Frame(im, i, i / 25.0)

    def close(self):
        self.closed = True


class BoxDetector:
    """A detector answering fixed boxes, to test tracking and classification without a real face."""

    name = "fixed"
    OPTIONS: dict = {}
    SIZES = (None, None)  # the whole frame

    def __init__(self, boxes):
        self.boxes, self.calls = boxes, 0

    def detect(self, frame, gray):
        self.calls += 1
        return list(self.boxes)

    def close(self):
        pass


@pytest.fixture
def pipe():
    with Pipeline(PipelineOptions(model=TFLITE, threads=1)) as p:
        yield p


def test_no_face_gives_empty_list_and_typed_result(pipe):
    result = pipe.process_image(np.full((120, 160, 3), 127, np.uint8))
    assert isinstance(result, FrameResult) and result.faces == []
    assert json.loads(json.dumps(result.to_dict())) == {"frame": 0, "time": 0.0, "faces": []}


@pytest.mark.parametrize("shape", [(90, 70), (90, 70, 1), (90, 70, 3), (90, 70, 4)])
def test_any_frame_layout_and_faces_cut_by_the_edge(pipe, shape):
    pipe.detector = BoxDetector([FaceBox(0, 0, 40, 40), FaceBox(50, 60, 20, 30)])  # second one at the corner
    result = pipe.process(frames(1, shape)[0])
    assert [f.box for f in result.faces] == [(0, 0, 40, 40), (50, 60, 20, 30)]
    for f in result.faces:
        assert isinstance(f, FaceResult) and set(f.probs) == set(pipe.labels)
        assert f.label == max(f.probs, key=f.probs.get) and abs(sum(f.probs.values()) - 1) < 1e-4


def test_thirty_faces_in_one_call(pipe):
    boxes = [FaceBox(40 * (i % 6), 40 * (i // 6), 36, 36) for i in range(30)]
    pipe.detector = BoxDetector(boxes)
    assert len(pipe.process(frames(1, (200, 240, 3))[0]).faces) == 30


def test_tflite_and_onnx_agree():
    pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed (base runtime install)")
    crops = frames(5, (64, 64, 3), seed=3)
    with Pipeline(model=TFLITE, threads=1) as a, Pipeline(model=ONNX, threads=1) as b:
        pa, pb = a.classifier.predict(crops), b.classifier.predict(crops)
    np.testing.assert_allclose(pa, pb, atol=1e-5)


@pytest.mark.parametrize("batch", ["n", 1])
def test_a_file_that_outputs_logits_is_read_as_probabilities(tmp_path, batch):
    """A third-party .onnx ending in raw scores, exported for any batch or for batch 1 only: the Classifier
    gives probabilities (softmax: same ranking) for several faces at once, face by face the same."""
    from test_metadata import _tiny_onnx

    from fer_edge.runtime.model.backends import Classifier
    from fer_edge.runtime.model.preprocess import PreprocessSpec, preprocess

    raw = _tiny_onnx(tmp_path / "logits.onnx", softmax=False, batch=batch)
    clf = Classifier(raw, ModelFlags(labels="fer2013", normalize="0,1"))
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    probs = clf.predict(faces)
    scores = np.concatenate([clf.backend.infer(x[None]) for x in preprocess(faces, PreprocessSpec())])
    assert clf.scores and scores.min() < 0
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(1), scores.argmax(1))
    np.testing.assert_allclose(probs, np.concatenate([clf.predict(f[None]) for f in faces]), atol=1e-6)
    with_softmax = Classifier(_tiny_onnx(tmp_path / "probs.onnx", batch=batch),
                              ModelFlags(labels="fer2013", normalize="0,1"))
    assert not with_softmax.scores
    np.testing.assert_allclose(with_softmax.predict(faces), probs, atol=1e-5)


def _linear_onnx(path: Path, in_dims: list, weights: np.ndarray) -> Path:
    """input -> flatten -> weights -> softmax: an .onnx whose answer depends on where every pixel lands."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["z"]),
         helper.make_node("Softmax", ["z"], ["probs"], axis=1)], "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_dims)],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [in_dims[0], weights.shape[1]])],
        initializer=[numpy_helper.from_array(weights, "w"),
                     numpy_helper.from_array(np.array([-1, weights.shape[0]], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_channels_first_onnx_reads_faces_like_channels_last(tmp_path):
    """A PyTorch export takes N x C x H x W: the same weights laid out for it give the same answers as the
    channels-last file, and an input without a fixed size is refused in one line."""
    from fer_edge.runtime.model.backends import Classifier
    from fer_edge.runtime.core.errors import ModelError

    w_hwc = np.random.default_rng(1).normal(0, 0.05, (48, 48, 3, 7)).astype(np.float32)
    w_chw = np.ascontiguousarray(w_hwc.transpose(2, 0, 1, 3))
    last = _linear_onnx(tmp_path / "nhwc.onnx", ["n", 48, 48, 3], w_hwc.reshape(-1, 7))
    first = _linear_onnx(tmp_path / "nchw.onnx", ["n", 3, 48, 48], w_chw.reshape(-1, 7))
    faces = np.random.default_rng(2).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    a = Classifier(last, ModelFlags(labels="fer2013", normalize="0,1", colour="grey"))
    b = Classifier(first, ModelFlags(labels="fer2013", normalize="0,1", colour="grey"))
    assert b.backend.channels_first and b.backend.input_shape == (48, 48, 3)
    np.testing.assert_allclose(b.predict(faces), a.predict(faces), atol=1e-5)
    with pytest.raises(ModelError, match="fixed size"):
        Classifier(_linear_onnx(tmp_path / "dyn.onnx", ["n", "h", "w", 1], w_hwc[..., :1, :].reshape(-1, 7)),
                   ModelFlags(labels="fer2013", normalize="0,1"))


def test_overlay_bars_never_cover_another_face():
    """A crowd: each face's probability bars go where they hide no other face (or are left out), so every
    face stays visible; a face with room beside it gets its bars."""
    from fer_edge.runtime.media.drawing import draw
    from fer_edge.runtime.model.labels import FER2013

    probs = {label: 0.1 for label in FER2013.labels} | {"happy": 0.4}
    black = np.zeros((200, 320, 3), np.uint8)
    faces = [FaceResult((20, 60, 60, 60), "happy", probs, 0), FaceResult((90, 60, 60, 60), "happy", probs, 1)]
    out = draw(black, FrameResult(0, 0.0, faces))
    for x, y, w, h in (f.box for f in faces):
        assert not out[y + 4:y + h - 4, x + 4:x + w - 4].any(), f"something drawn over the face at {x},{y}"
    assert out[60:120, 156:300].any(), "the right-hand face has room for its bars but got none"
    alone = draw(black, FrameResult(0, 0.0, faces[:1]))
    assert alone[60:120, 86:150].any(), "a lone face got no bars"


def test_corrupt_frames_are_skipped_and_counted(pipe):
    good = frames(3)
    images = [good[0], None, np.zeros((0, 0, 3), np.uint8), good[1], np.zeros((10, 10, 3), np.float32),
              np.zeros((5, 5, 2), np.uint8), good[2]]
    src = ListSource(images)
    stats = pipe.run(src)
    assert stats.frames == 3 and stats.corrupt == 4 and src.closed


def test_tracks_keep_ids_and_smoothing_is_an_ema():
    t = Tracker(iou_threshold=0.3, max_missed=1, smooth=0.5)
    assert {tr.id: tr.box.x for tr in t.update([FaceBox(10, 10, 50, 50), FaceBox(200, 10, 50, 50)])} == {1: 10, 2: 200}
    moved = [FaceBox(204, 12, 50, 50), FaceBox(12, 11, 50, 50)]  # moved a little, order swapped
    assert {tr.id: tr.box.x for tr in t.update(moved)} == {1: 12, 2: 204}
    assert [tr.id for tr in t.update([FaceBox(12, 11, 50, 50)])] == [1, 2]  # track 2 missed once: kept
    assert [tr.id for tr in t.update([FaceBox(12, 11, 50, 50)])] == [1]  # missed twice: ended
    tr = t.tracks[0]
    t.smooth_probs(tr, np.array([1.0, 0.0]))
    np.testing.assert_allclose(t.smooth_probs(tr, np.array([0.0, 1.0])), [0.5, 0.5])


def test_one_off_boxes_are_not_carried_and_nested_boxes_open_no_track():
    t = Tracker(iou_threshold=0.3, max_missed=3)
    face = FaceBox(100, 100, 80, 80)
    t.update([face, FaceBox(10, 10, 40, 40)])  # the second box is a one-off false detection
    t.update([face])
    assert [tr.id for tr in t.tracks] == [1]  # seen once, missed once: gone (a confirmed face would be kept)
    mouth = FaceBox(120, 140, 30, 30)
    assert [tr.id for tr in t.update([mouth])] == [1]  # the face was missed, its mouth found: no new track
    assert drop_nested([face, mouth, FaceBox(300, 10, 40, 40)]) == [face, FaceBox(300, 10, 40, 40)]


def test_detect_every_k_follows_boxes_between_detections():
    with Pipeline(model=TFLITE, threads=1, detect_every=3) as p:
        p.detector = det = BoxDetector([FaceBox(30, 30, 40, 40)])
        base = frames(1, (120, 160, 3))[0]
        results = [p.process(np.roll(base, i, axis=1), i) for i in range(7)]  # content moves right 1 px a frame
    assert det.calls == 3  # frames 0, 3, 6
    assert all(len(r.faces) == 1 and r.faces[0].track == 1 for r in results)
    assert results[2].faces[0].box[0] == 32  # followed by template matching, not frozen


def test_blazeface_anchors_and_weighted_nms():
    anchors = blazeface_anchors()
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])  # first stride-8 cell, 2 anchors
    np.testing.assert_allclose(anchors[512], [0.5 / 8, 0.5 / 8])  # first stride-16 cell, 6 anchors
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    out = weighted_nms(boxes, np.array([0.9, 0.9, 0.6]), 0.3)
    assert len(out) == 2
    np.testing.assert_allclose(out[0][0], [0.5, 0, 10.5, 10])


# -- live sources ---------------------------------------------------------------------------------

class FlakyCamera:
    """Opens fine, gives `frames` frames, then fails every read (unplugged)."""

    def __init__(self, frames_before_failure: int):
        self.left = frames_before_failure
        self.rng = np.random.default_rng(0)

    def isOpened(self):
        return True

    def read(self):
        time.sleep(0.002)  # a camera's frame interval, shortened
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, self.rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)

    def release(self):
        pass


def test_camera_that_dies_and_comes_back(pipe, caplog):
    opens = []

    def opener():
        opens.append(time.monotonic())
        if len(opens) == 1:
            return FlakyCamera(5)  # dies after 5 frames
        if len(opens) in (2, 3):
            raise OSError("no such device")  # still unplugged: backoff
        return FlakyCamera(10_000)  # plugged back in

    src = LiveSource(opener, "fake camera", backoff=0.01, max_backoff=0.05, fail_reads=3)
    with caplog.at_level(logging.WARNING, logger="fer_edge.runtime"):
        stats = pipe.run(src, max_frames=20)
    assert stats.frames == 20 and stats.reconnects >= 1 and len(opens) >= 4
    assert "lost the stream" in caplog.text and "no such device" in caplog.text


class StalledCamera(FlakyCamera):
    def read(self):
        if self.left <= 0:
            time.sleep(0.5)  # blocks like a dead RTSP server, longer than the stall timeout
        return super().read()


def test_stalled_stream_is_reopened(pipe, caplog):
    n = []

    def opener():
        n.append(1)
        return StalledCamera(3) if len(n) == 1 else FlakyCamera(10_000)

    src = LiveSource(opener, "fake stream", backoff=0.01, stall_timeout=0.2)
    with caplog.at_level(logging.WARNING, logger="fer_edge.runtime"):
        stats = pipe.run(src, max_frames=10)
    assert stats.frames == 10 and len(n) >= 2 and "no frame for" in caplog.text


def test_live_source_stops_on_request(pipe):
    src = LiveSource(lambda: FlakyCamera(10_000), "fake camera")
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    stats = pipe.run(src, stop=stop)
    assert stats.frames > 0 and stats.stopped_by == "stop requested"
    assert not src._thread.is_alive()


def test_picamera_off_a_pi_names_the_apt_route():
    if "picamera2" in sys.modules:
        pytest.skip("picamera2 is installed")
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        open_source(picamera=True)


# -- the CLI, in process ----------------------------------------------------------------------------

def test_cli_json_lines_one_per_frame(tmp_path, capsys):
    video = write_video(tmp_path / "v.mp4", 12)
    out = tmp_path / "out.jsonl"
    rc = main(["--source", str(video), "--model", str(TFLITE), "--json", str(out), "--loop", "2",
               "--record", str(tmp_path / "rec.mp4"), "--summary", str(tmp_path / "s.json"), "--window", "off"])
    assert rc == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(24))
    assert all(set(d) == {"frame", "time", "faces"} and d["faces"] == [] for d in lines)
    assert lines[13]["time"] > lines[11]["time"]  # the second pass continues the clock
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 24 and summary["stopped_by"] == "end of source"
    assert cv2.VideoCapture(str(tmp_path / "rec.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 24
    assert "frames 24" in capsys.readouterr().err


def test_cli_refuses_a_model_without_metadata_unless_flags_say(tmp_path, capsys):
    from fer_edge.runtime.model.metadata import _strip_appended_zip

    bare = tmp_path / "bare.tflite"
    bare.write_bytes(_strip_appended_zip(TFLITE))
    img = tmp_path / "grey.png"
    cv2.imwrite(str(img), np.full((60, 60), 100, np.uint8))
    assert main(["--image", str(img), "--model", str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ModelError: ") and "--labels" in err and "Traceback" not in err
    assert main(["--image", str(img), "--model", str(bare), "--labels", "fer2013", "--normalize", "0,1"]) == 0
    assert "no face" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--source", "/nonexistent/video.mp4"], "SourceError: /nonexistent/video.mp4: no such file"),
    (["--source", "{empty}"], "SourceError: {empty}: OpenCV cannot open this video file"),
    (["--source", "{empty}", "--model", "/nonexistent/model.h5"], "ModelError: /nonexistent/model.h5: no such model"),
    (["--camera", "0", "--detect-every", "0"], "FerEdgeError: --detect-every must be 1 or more"),
    (["--source", "{empty}", "--detector", "haar", "--detector-model", str(TFLITE)],
     "not a loadable Haar cascade" if hasattr(cv2, "CascadeClassifier") else "OpenCV 5 removed them"),
    (["--source", "{empty}", "--detector-model", str(TFLITE)], "not a loadable YuNet model"),
    (["--source", "{empty}", "--detect-size", "8"], "--detect-size must be between 32 and 8192 pixels, found 8"),
    (["--source", "{empty}", "--providers", "CUDAExecutionProvider"], "--providers applies to .onnx models"),
    (["--source", "v4l2src ! videoconvert ! appsink"] if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER)
     else ["--source", "{empty}", "--loop", "0"], "SourceError: this OpenCV build cannot read GStreamer"
     if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER) else "--loop must be 1 or more"),
])
def test_cli_user_mistakes_are_one_line(argv, message, capsys, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    argv = [a.format(empty=empty) for a in argv]
    if "--model" not in argv:
        argv += ["--model", str(TFLITE)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(empty=empty) in err and "Traceback" not in err


def test_cli_without_a_default_model_asks_for_one(monkeypatch, tmp_path, capsys):
    import fer_edge.runtime.recognize.pipeline as pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_MODEL", "no-such-model.tflite")
    assert main(["--source", str(write_video(tmp_path / "v.mp4", 2))]) == 2
    assert "pass --model" in capsys.readouterr().err


def test_sigterm_mid_video_is_an_interruption_that_commits_nothing(tmp_path):
    """A video file is finite work: stopped, the run exits 130 and its --json stays under its temporary name,
    removed (issue 35; a live source or a service's stop is its normal end, exit 0). Still no TensorFlow."""
    video = write_video(tmp_path / "v.mp4", 20)
    out = tmp_path / "out.jsonl"
    code = ("import sys; from fer_edge.runtime.cli import main; rc = main(sys.argv[1:]); "
            "assert not any(m.split('.')[0] in ('tensorflow', 'keras', 'torch') for m in sys.modules), 'heavy import'; "
            "sys.exit(rc)")
    proc = subprocess.Popen([sys.executable, "-c", code, "--source", str(video), "--loop", "1000", "--model",
                             str(TFLITE), "--json", str(out), "--window", "off"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(p.stat().st_size > 2000 for p in tmp_path.glob(".out.jsonl.tmp*")):
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.strip().endswith("interrupted (SIGTERM)"), err
    assert "Traceback" not in err and "heavy import" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


# --- backend options: declared by each backend, checked by one opener ---------------------------------------

def test_backend_options_are_checked_not_dropped():
    from fer_edge.runtime.model.backends import open_backend
    from fer_edge.runtime.core.errors import ModelError

    assert open_backend(TFLITE, threads=1, kernels="builtin", providers=None).kernels == "builtin"
    assert open_backend(TFLITE).kernels == "default"  # None / absent: the backend's own default
    with pytest.raises(ModelError, match="unknown backend option 'kernal'"):
        open_backend(TFLITE, kernal="builtin")  # a misspelt option is refused, not silently dropped
    with pytest.raises(ModelError, match=r"--kernels applies to \.tflite models, not to tiny_fer\.onnx"):
        open_backend(ONNX, kernels="builtin")
    with pytest.raises(ModelError, match=r"--providers applies to \.onnx models"):
        open_backend(TFLITE, providers=["CPUExecutionProvider"])


def test_shipped_models_by_short_name(tmp_path):
    from fer_edge.runtime.core.errors import ModelError
    from fer_edge.runtime.recognize.pipeline import DEFAULT_MODEL, default_model, resolve_model, shipped_models

    shipped = shipped_models()
    assert "vgg" in shipped and shipped["vgg"].name == "fer-vgg_int8.tflite"
    assert resolve_model("vgg") == resolve_model("fer-vgg") == shipped["vgg"]
    assert resolve_model(None) == default_model() and default_model().name == DEFAULT_MODEL
    assert resolve_model(str(TFLITE)) == TFLITE  # a path is itself
    with pytest.raises(ModelError, match="not the name of a shipped model: expected .* or one of .*vgg"):
        resolve_model("nosuchname")
