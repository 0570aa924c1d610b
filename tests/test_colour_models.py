"""Colour models in (issue 43): a model's channel order, scaling, alignment and classes stated once, written into
every file fer-convert makes, and followed by fer-edge with no flags.

The channel test's model answers from the colour alone: the mean red minus the mean blue of the face, so it
tells a red-tinted face from a blue-tinted one through the INT8 files only when the channels arrive in the
order the file says (RGB), and cannot when they are swapped (BGR) or the face is grey. Its photos are tfeid-dev
faces tinted in a temporary folder (nothing of the data is kept).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.convert.cli import main as convert
from fer_edge.runtime.cli import main as fer_edge
from fer_edge.runtime.model.metadata import read_metadata

TINTS = {"red": (0.55, 0.55, 1.0), "blue": (1.0, 0.55, 0.55)}  # B, G, R gains
PHOTOS_PER_TINT = 30


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def tinted(tmp_path_factory, data_dir) -> Path:
    """A photo folder of colour faces (labels.csv: file,label), half tinted red, half blue."""
    src = data_dir / "tfeid-dev" / "images"
    if not src.is_dir():
        pytest.skip(f"{src} is missing: the tfeid-dev photos are needed")
    out = tmp_path_factory.mktemp("tinted")
    photos = sorted(src.glob("*.jpg"))[:PHOTOS_PER_TINT]
    rows = ["file,label"]
    for name, gains in TINTS.items():
        for p in photos:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR).astype(np.float32) * np.float32(gains)
            cv2.imwrite(str(out / f"{name}_{p.name}"), np.clip(img, 0, 255).astype(np.uint8))
            rows.append(f"{name}_{p.name},{name}")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    return out


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory, keras) -> Path:
    """A Keras model without metadata, 40x32 RGB input: logits (mean R - mean B, mean B - mean R) x 20."""
    inp = keras.Input((40, 32, 3), name="face")
    x = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(2)
    out = dense(x)
    model = keras.Model(inp, out)
    dense.set_weights([np.array([[20.0, -20.0], [0.0, 0.0], [-20.0, 20.0]], np.float32), np.zeros(2, np.float32)])
    path = tmp_path_factory.mktemp("colour") / "tint.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, colour_model, tinted) -> Path:
    out = tmp_path_factory.mktemp("tint_export")
    code = convert([str(colour_model), "--int8", "--labels", "red,blue", "--colour", "rgb", "--normalize", "0,1",
                    "--data", str(tinted), "--force-calibration", "--out", str(out), "--force"])
    assert code == 0
    return out


def _labels(model: Path, photos: list[Path], capsys, *flags: str) -> list[str]:
    out = []
    for p in photos:
        assert fer_edge(["--model", str(model), "--image", str(p), "--json", "-", *flags]) == 0
        faces = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        out.append(faces[0]["faces"][0]["label"] if faces and faces[0].get("faces") else None)
    return out


@pytest.mark.slow
def test_the_files_carry_the_colour_and_classes_and_gate_on_colour_faces(exported):
    report = json.loads((exported / "report.json").read_text())
    for name in ("tint_int8.tflite", "tint_int8.onnx"):
        meta = read_metadata(exported / name)
        assert meta.labels == ("red", "blue")
        assert meta.preprocess.colour == "rgb" and meta.preprocess.size == (40, 32)
    for fmt in ("tflite-int8", "onnx-int8"):
        assert report["formats"][fmt]["pass"], report["formats"][fmt]
        assert report["formats"][fmt]["accuracy"] > 0.95  # the model is right on the tinted faces ...
    assert report["reference"]["accuracy"] > 0.95
    assert any("photos" in n for n in report.get("notes", []))  # ... which came from photos, found and cut


@pytest.mark.slow
def test_fer_edge_needs_no_flags_and_the_answer_follows_the_channel_order(exported, tinted, capsys):
    photos = [tinted / f"{t}_{p}" for t in TINTS for p in sorted(x.name.split("_", 1)[1] for x in
                                                                   tinted.glob("red_*"))[:2]]
    truth = [p.name.split("_", 1)[0] for p in photos]
    for name in ("tint_int8.tflite", "tint_int8.onnx"):
        assert _labels(exported / name, photos, capsys) == truth
    swapped = _labels(exported / "tint_int8.tflite", photos, capsys, "--colour", "bgr")
    assert swapped == [{"red": "blue", "blue": "red"}[t] for t in truth]
    grey = _labels(exported / "tint_int8.tflite", photos, capsys, "--colour", "grey")
    assert len(set(grey)) == 1  # no colour, no answer: every face gets the same class


@pytest.mark.slow
def test_a_custom_class_list_reaches_every_output(exported, tinted, tmp_path, capsys):
    photo = next(iter(sorted(tinted.glob("blue_*"))))
    rec, report = tmp_path / "annotated.jpg", tmp_path / "run.html"
    assert fer_edge(["--model", str(exported / "tint_int8.tflite"), "--image", str(photo), "--json", "-",
                     "--record", str(rec), "--report", str(report)]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert set(line["faces"][0]["probs"]) == {"red", "blue"}
    page = report.read_text()
    assert "blue" in page and "red" in page and "happy" not in page
    assert cv2.imread(str(rec)) is not None


BAD = [
    (["--mean", "0.5,0.5", "--std", "0.2,0.2,0.2"], "mean must be 3 finite numbers"),
    (["--mean", "0.5,0.5,0.5", "--std", "0.2,0,0.2"], "std must be positive"),
    (["--mean", "nan,0.5,0.5", "--std", "0.2,0.2,0.2"], "finite numbers"),
    (["--mean", "0.5,0.5,0.5"], "--mean and --std go together"),
    (["--normalize", "imagenet", "--mean", "0.5,0.5,0.5", "--std", "0.2,0.2,0.2"], "either --normalize or --mean"),
    (["--labels", "red,blue,green"], "3 classes"),
    (["--labels", "red,Red"], "duplicate class name red"),
    (["--labels", "{labels_txt}"], "3 classes"),
]


@pytest.mark.parametrize("flags,words", BAD, ids=[w for _, w in BAD])
def test_bad_colour_flags_are_one_line_exit_2_and_write_nothing(colour_model, tinted, tmp_path, capfd, flags, words):
    (tmp_path / "labels.txt").write_text("0 Engaged\n1 Bored\n2 Away\n")
    flags = [f.format(labels_txt=tmp_path / "labels.txt") for f in flags]
    base = {"--labels": "red,blue", "--colour": "rgb", "--normalize": "0,1"}
    given = set(flags[::2])
    if "--mean" in given or "--std" in given:
        base.pop("--normalize")
    argv = [str(colour_model), "--int8", *[x for k, v in base.items() if k not in given for x in (k, v)], *flags,
            "--data", str(tinted), "--out", str(tmp_path / "out")]
    assert convert(argv) == 2
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if "Error: " in line]  # progress lines ("loading ...") aside
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_3_channel_model_without_colour_is_refused(colour_model, tinted, tmp_path, capfd):
    assert convert([str(colour_model), "--int8", "--labels", "red,blue", "--normalize", "0,1", "--data", str(tinted),
                    "--out", str(tmp_path / "out")]) == 2
    errors = [line for line in capfd.readouterr().err.splitlines() if "Error: " in line]
    assert len(errors) == 1 and "--colour rgb|bgr" in errors[0], errors
    assert not (tmp_path / "out").exists()


def test_align_5point_with_a_detector_without_landmarks_is_refused(exported, tinted, tmp_path, capfd):
    photo = next(iter(sorted(tinted.glob("red_*"))))
    assert fer_edge(["--model", str(exported / "tint_int8.tflite"), "--align", "5point", "--detector", "haar",
                     "--image", str(photo), "--record", str(tmp_path / "a.jpg")]) == 2
    errors = [line for line in capfd.readouterr().err.splitlines() if "Error: " in line]
    assert len(errors) == 1 and "five landmarks" in errors[0] and "haar" in errors[0], errors
    assert not (tmp_path / "a.jpg").exists()


@pytest.mark.slow
def test_python_compat_and_the_http_api_follow_the_files_classes(exported, tinted):
    """Recognizer, fer_edge.compat's FER and serve-api's /predict feed the colour crops and answer in the file's
    own two classes."""
    from fer_edge import Recognizer
    from fer_edge.compat import FER

    model = exported / "tint_int8.onnx"
    red, blue = (next(iter(sorted(tinted.glob(f"{t}_*")))) for t in ("red", "blue"))
    rec = Recognizer(model=model)
    assert rec.labels == ("red", "blue")
    assert [f.label for f in rec.analyze(str(red))] == ["red"]
    fer = FER(model=model)
    assert fer._get_labels() == {0: "red", 1: "blue"} and fer.top_emotion(str(blue))[0] == "blue"
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from fer_edge.runtime.recognize.pipeline import PipelineOptions
    from fer_edge.runtime.serve.api import create_app

    with TestClient(create_app(PipelineOptions(model=model, threads=1))) as client:
        r = client.post("/predict", files={"file": ("red.jpg", red.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        faces = r.json()["faces"]
        assert faces[0]["label"] == "red" and set(faces[0]["probs"]) == {"red", "blue"}


@pytest.mark.slow
def test_a_video_run_and_home_assistant_follow_the_files_classes(exported, samples_dir, tmp_path, capsys):
    """A video through the colour model: the summary, the visits and the Home Assistant entities name its
    classes (red, blue), never FER2013's."""
    from fer_edge.runtime.serve.ha import sensors

    summary, visits = tmp_path / "summary.json", tmp_path / "visits.jsonl"
    assert fer_edge(["--model", str(exported / "tint_int8.tflite"), "--source", str(samples_dir / "fer_test.mp4"),
                     "--summary", str(summary), "--visits", str(visits), "--min-confidence", "0"]) == 0
    text = summary.read_text() + visits.read_text()
    assert ("red" in text or "blue" in text) and not any(e in text for e in ("happy", "neutral", "angry"))
    ids = {s["object_id"] for s in sensors(("red", "blue"))}
    assert {"share_red", "share_blue"} <= ids



def test_photo_sets_count_faceless_photos_and_grey_data_for_a_colour_model_gets_a_warning(data_dir, samples_dir,
                                                                                            tmp_path):
    import shutil

    from fer_edge.runtime.model.labels import FER2013
    from fer_edge.runtime.model.metadata import ModelMetadata
    from fer_edge.runtime.model.preprocess import IMAGENET, PreprocessSpec
    from fer_edge.runtime.recognize.photos import load_for_model

    spec = PreprocessSpec((64, 64), 3, colour="bgr", mean=IMAGENET[0][::-1], std=IMAGENET[1][::-1])
    for name in ("happy", "neutral"):
        (tmp_path / name).mkdir()
    shutil.copy(samples_dir / "fer_justin.jpg", tmp_path / "happy" / "justin.jpg")
    shutil.copy(samples_dir / "fer_no-faces.jpg", tmp_path / "neutral" / "cartoon.jpg")
    (tmp_path / "neutral" / "broken.jpg").write_bytes(b"not a jpeg")
    ds = load_for_model(tmp_path, ModelMetadata(FER2013, spec))
    assert ds.images.shape == (1, 64, 64, 3) and ds.labels.tolist() == [FER2013.index("happy")]
    assert any("1 photos without a face and 1 unreadable ones skipped" in n for n in ds.notes), ds.notes
    grey = load_for_model(data_dir / "fer2013.npz", ModelMetadata(FER2013, spec))
    assert any(n.startswith("warning:") and "grey faces" in n for n in grey.notes), grey.notes
