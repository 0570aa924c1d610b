"""fer_edge.compat beyond fer's own tests (tests/test_fer_upstream.py): the inputs, options and outputs of
fer's documented API that its suite does not reach, and pandas only when asked."""
from __future__ import annotations

import base64
import subprocess
import sys

import numpy as np
import pytest

from fer_edge import FerEdgeError
from fer_edge.compat import FER, InvalidImage, Video


@pytest.fixture(scope="module")
def fer():
    with FER() as detector:
        yield detector


def test_importing_compat_and_detecting_needs_no_pandas(samples_dir):
    code = ("import sys; from fer_edge.compat import FER; "
            f"FER().detect_emotions({str(samples_dir / 'fer_justin.jpg')!r}); print('pandas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_the_pandas_methods_without_pandas_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError, as when it is missing
    with pytest.raises(FerEdgeError, match=r"pip install 'fer-edge\[compat\]'"):
        Video.get_first_face(object())


def test_fers_inputs_path_array_grey_and_base64_give_the_same_faces(fer, samples_dir):
    import cv2

    path = samples_dir / "fer_justin.jpg"
    by_path = fer.detect_emotions(str(path))
    assert by_path == fer.detect_emotions(cv2.imread(str(path)))
    uri = "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
    assert fer.detect_emotions(uri) == by_path
    (face,) = by_path
    assert set(face["emotions"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert all(round(p, 2) == p for p in face["emotions"].values())
    grey = fer.detect_emotions(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    assert len(grey) == 1 and max(grey[0]["emotions"], key=grey[0]["emotions"].get) == "happy"


@pytest.mark.parametrize("bad", [None, "no/such.jpg", "data:image/png;base64,@@@", "https://example.com/a.jpg",
                                 np.zeros((20, 20), np.float64), 42])
def test_what_is_not_an_image_raises_invalid_image(fer, bad):
    with pytest.raises(InvalidImage):
        fer.detect_emotions(bad)


def test_given_face_rectangles_skip_detection(fer, samples_dir):
    (face,) = fer.detect_emotions(str(samples_dir / "fer_justin.jpg"))
    (again,) = fer.detect_emotions(str(samples_dir / "fer_justin.jpg"), face_rectangles=[face["box"]])
    # a bare box has no landmarks to level the eyes by, so the crop and the scores differ a little
    assert again["box"] == face["box"]
    assert max(again["emotions"], key=again["emotions"].get) == "happy"


def test_fers_options_are_checked_as_fer_checks_them(samples_dir):
    for kwargs in ({"scale_factor": 1.0}, {"min_face_size": 0}, {"min_neighbors": -1}, {"offsets": (1,)}):
        with pytest.raises(ValueError):
            FER(**kwargs)
    with pytest.raises(FerEdgeError, match="tfserving"):
        FER(tfserving=True)
    with FER(min_face_size=10_000) as big_only:  # min_face_size drops smaller faces, as in fer
        assert big_only.detect_emotions(str(samples_dir / "fer_justin.jpg")) == []
        assert big_only.top_emotion(str(samples_dir / "fer_justin.jpg")) == (None, None)


def test_video_analyze_writes_fers_outputs_and_nothing_half_written(fer, samples_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    video = Video(str(samples_dir / "fer_test.mp4"), outdir=str(tmp_path / "out"))
    rows = video.analyze(fer, max_results=6, frequency=2)
    assert len(rows) == 6 and set(rows[0]) >= {"box0", "happy0"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fer_test_output.mp4", "images.zip"]
    header = (tmp_path / "data.csv").read_text().splitlines()[0]  # fer's column order
    assert header == "angry0,box0,disgust0,fear0,happy0,neutral0,sad0,surprise0"
    quiet = Video(str(samples_dir / "fer_test.mp4"), outdir=str(tmp_path / "none"))
    assert len(quiet.analyze(fer, max_results=3, save_frames=False, save_video=False, output="csv")) == 3
    assert not (tmp_path / "none").exists()
    with pytest.raises(FerEdgeError):
        Video(str(tmp_path / "missing.mp4"))
