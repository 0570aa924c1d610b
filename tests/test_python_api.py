"""`from fer_edge import Recognizer`: the Python API over the runtime's Pipeline (issue 28).

The photos and the video are the shared samples ($FER_EDGE_DATA/samples): fer_justin.jpg (one smiling man),
fer_no-faces.jpg (a cartoon), fer_test.mp4 (115 frames, one face on each)."""
from __future__ import annotations

import importlib.resources
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

import fer_edge
from fer_edge import FaceResult, FerEdgeError, FrameResult, ImageError, ModelError, Recognizer, SourceError

HEAVY = ("tensorflow", "keras", "torch")


@pytest.fixture(scope="module")
def rec():
    with Recognizer(threads=1) as r:
        yield r


def test_the_base_install_analyzes_a_photo_without_importing_tensorflow_keras_or_torch(samples_dir):
    probe = (
        "import json, sys\n"
        "import fer_edge\n"
        "lazy = 'fer_edge.runtime.recognize.pipeline' not in sys.modules\n"
        "from fer_edge import Recognizer\n"
        f"faces = Recognizer().analyze({str(samples_dir / 'fer_justin.jpg')!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in %r)\n"
        "print(json.dumps({'lazy': lazy, 'labels': [f.label for f in faces], 'heavy': heavy}))\n" % (HEAVY,))
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["labels"] == ["happy"]  # the analysis ran: the test cannot pass by importing nothing
    assert report["heavy"] == [], f"importing and using fer_edge pulled in {report['heavy']}"
    assert report["lazy"], "`import fer_edge` alone should not load the pipeline (fer_edge.training imports it)"


def test_the_package_is_typed_and_names_what_it_exports():
    assert (importlib.resources.files("fer_edge") / "py.typed").is_file()
    assert set(fer_edge.__all__) <= set(dir(fer_edge))
    assert fer_edge.__version__
    with pytest.raises(AttributeError):
        fer_edge.NoSuchThing  # noqa: B018


def test_analyze_takes_a_path_an_array_or_bytes_and_gives_the_same_faces(rec, samples_dir):
    import cv2

    path = samples_dir / "fer_justin.jpg"
    by_path = rec.analyze(path)
    assert rec.analyze(str(path)) == by_path
    assert rec.analyze(cv2.imread(str(path))) == by_path
    assert rec.analyze(path.read_bytes()) == by_path
    (face,) = by_path
    assert isinstance(face, FaceResult)
    assert face.label == "happy" and max(face.probs, key=face.probs.get) == "happy"
    assert set(face.probs) == set(rec.labels) and abs(sum(face.probs.values()) - 1) < 0.02
    x, y, w, h = face.box
    assert w > 50 and h > 50 and 0 < face.score <= 1
    assert len(face.landmarks) == 5  # YuNet's eyes, nose and mouth corners, inside the box
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)


def test_no_face_is_an_empty_list(rec, samples_dir):
    assert rec.analyze(samples_dir / "fer_no-faces.jpg") == []
    assert rec.analyze(np.zeros((4, 4, 3), np.uint8)) == []  # too small to hold a face: still a list


@pytest.mark.parametrize("image, error", [
    (None, ImageError), ("no/such/photo.jpg", ImageError), (b"not an image", ImageError),
    (np.zeros((32, 32), np.float32), FerEdgeError), (np.zeros((32, 32, 2), np.uint8), FerEdgeError),
])
def test_bad_images_raise_the_clis_errors_never_cv2_errors_or_none(rec, image, error):
    with pytest.raises(error):
        rec.analyze(image)


def test_bad_options_models_and_sources_raise_fer_edge_errors(rec, tmp_path):
    with pytest.raises(FerEdgeError, match="does not take colour"):
        Recognizer(colour="red")
    with pytest.raises(ModelError):
        Recognizer(model="no-such-model")
    with pytest.raises(FerEdgeError, match="detect-every"):
        Recognizer(detect_every=0)
    with pytest.raises(SourceError):
        rec.stream(tmp_path / "missing.mp4")  # at the call, not at the first frame
    closed = Recognizer()
    closed.close()
    with pytest.raises(FerEdgeError, match="closed"):
        closed.analyze(np.zeros((64, 64, 3), np.uint8))


def test_classify_gives_probabilities_for_boxes_found_elsewhere(rec, samples_dir):
    (face,) = rec.analyze(samples_dir / "fer_justin.jpg")
    (probs,) = rec.classify(samples_dir / "fer_justin.jpg", [face.box])
    assert max(probs, key=probs.get) == "happy"
    with pytest.raises(FerEdgeError, match="holds no face"):
        rec.classify(samples_dir / "fer_justin.jpg", [(5000, 5000, 50, 50)])


def test_stream_gives_the_same_results_as_the_command_line(rec, samples_dir, tmp_path):
    from fer_edge.runtime.cli import main

    video = samples_dir / "fer_test.mp4"
    out = tmp_path / "cli.jsonl"
    assert main(["--source", str(video), "--json", str(out), "--max-frames", "12", "--threads", "1", "--quiet"]) == 0
    cli = [json.loads(line) for line in out.read_text().splitlines()]
    results = list(rec.stream(video, max_frames=12))
    assert all(isinstance(r, FrameResult) for r in results)
    assert [r.to_dict() for r in results] == cli
    assert [r.frame for r in results] == list(range(12)) and all(len(r.faces) == 1 for r in results)
    assert len({r.faces[0].track for r in results}) == 1  # one track across frames: a stream, not photos


def test_breaking_out_of_a_stream_closes_the_source(rec, samples_dir, monkeypatch):
    from fer_edge.runtime.media import sources

    closed = []
    original = sources.VideoFileSource.close
    monkeypatch.setattr(sources.VideoFileSource, "close", lambda self: (closed.append(self), original(self)))
    for result in rec.stream(samples_dir / "fer_test.mp4"):
        if result.frame == 2:
            break
    assert len(closed) == 1 and closed[0]._cap is None


def test_frames_give_the_image_to_draw_on_and_a_folder_streams_its_photos(rec, samples_dir):
    (image, result), = list(rec.frames(samples_dir / "fer_test.mp4", max_frames=1))
    assert image.ndim == 3 and image.shape[2] == 3
    drawn = Recognizer.draw(image, result)
    assert drawn.shape == image.shape and (drawn != image).any()
    names = {r.source: len(r.faces) for r in rec.stream(samples_dir) if r.source.endswith(".jpg")}
    assert names["fer_justin.jpg"] == 1 and names["fer_no-faces.jpg"] == 0


def test_one_recognizer_serves_threads_at_once(rec, samples_dir):
    photo = (samples_dir / "fer_justin.jpg").read_bytes()
    expected = rec.analyze(photo)
    got, errors = [], []

    def work():
        try:
            for _ in range(3):
                got.append(rec.analyze(photo))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and got == [expected] * 9


@pytest.mark.parametrize("page", ["docs/python.md", "README.md"])
def test_the_python_shown_in_the_docs_runs(page, samples_dir, tmp_path):
    """Every ```python block of the page, run as written in a folder holding photo.jpg and video.mp4."""
    import re
    import shutil
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, f"{page} shows no Python"
    shutil.copy(samples_dir / "fer_justin.jpg", tmp_path / "photo.jpg")
    shutil.copy(samples_dir / "fer_test.mp4", tmp_path / "video.mp4")
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{page}:\n{code}\n{proc.stderr[-2000:]}"
        assert proc.stdout.strip(), f"{page}: this block printed nothing:\n{code}"
