"""fer-edge on the real sample photos and video (../shared/data/samples via $FER_EDGE_DATA).

The classifier is mostly the tiny committed test model: these tests are about faces, frames and outputs;
the labels it gives mean nothing. Where a label is asserted (the smiling man), the shipped model is used.
Accuracy is `fer-edge verify`'s job, checked on FER2013 below.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from fer_edge.runtime.cli import main
from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions, default_model

TFLITE = Path(__file__).parent / "assets" / "tiny_fer.tflite"
VIDEO_FRAMES = 115  # fer_test.mp4
SELFIE_FACES = 7  # deepface_selfie-many-people.jpg: seven people, one half hidden at the bottom left
needs_haar = pytest.mark.skipif(not hasattr(cv2, "CascadeClassifier"), reason="OpenCV 5 has no Haar cascades")


def run_json(tmp_path, argv, model=TFLITE) -> list[dict]:
    out = tmp_path / "out.jsonl"
    assert main(argv + ["--model", str(model), "--json", str(out), "--window", "off", "--quiet", "--force"]) == 0
    return [json.loads(x) for x in out.read_text().splitlines()]


# --- the defaults (no detector flags): YuNet, FER2013 framing ------------------------------------

def test_defaults_find_one_face_on_every_frame_of_the_video_and_one_track(tmp_path, samples_dir):
    lines = run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4"), "--threads", "1"])
    assert [d["frame"] for d in lines] == list(range(VIDEO_FRAMES))
    assert all(len(d["faces"]) == 1 for d in lines)
    assert {f["track"] for d in lines for f in d["faces"]} == {1}
    assert all("source" not in d for d in lines)  # a video's frames are named by number and time


def test_defaults_find_six_of_the_seven_people_in_the_selfie(tmp_path, samples_dir):
    (line,) = run_json(tmp_path, ["--image", str(samples_dir / "deepface_selfie-many-people.jpg")])
    boxes = [f["box"] for f in line["faces"]]
    assert SELFIE_FACES - 1 <= len(boxes) <= SELFIE_FACES, boxes
    assert len({f["track"] for f in line["faces"]}) == len(boxes)


def test_defaults_label_the_smiling_man_happy_with_the_shipped_model(tmp_path, samples_dir):
    (line,) = run_json(tmp_path, ["--image", str(samples_dir / "fer_justin.jpg")], model=default_model())
    assert [f["label"] for f in line["faces"]] == ["happy"] and line["source"] == "fer_justin.jpg"


def test_defaults_find_no_face_in_the_cartoon(tmp_path, samples_dir):
    (line,) = run_json(tmp_path, ["--image", str(samples_dir / "fer_no-faces.jpg")])
    assert line == {"frame": 0, "time": 0.0, "faces": [], "source": "fer_no-faces.jpg"}


def test_tracking_carries_landmarks_between_detections(tmp_path, samples_dir):
    """--detect-every 3 follows the face in between; its aligned crop keeps working (landmarks move too)."""
    lines = run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4"), "--detect-every", "3"])
    assert len(lines) == VIDEO_FRAMES and all(len(d["faces"]) == 1 for d in lines)


def test_timeline_draws_each_tracks_probabilities(tmp_path, samples_dir):
    png = tmp_path / "timeline.png"
    run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4"), "--max-frames", "30", "--timeline", str(png)])
    image = cv2.imread(str(png))
    assert image is not None and image.shape[1] == 1000
    assert (image != 255).any(axis=2).mean() > 0.02  # curves and axes drawn, not a blank page


def test_blazeface_finds_the_face_on_every_frame(tmp_path, samples_dir, blazeface_model):
    lines = run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4"), "--detector", "blazeface",
                                "--detector-model", str(blazeface_model), "--threads", "1"])
    assert [d["frame"] for d in lines] == list(range(VIDEO_FRAMES))
    # exactly her face on every frame: the blurred street lights behind her (scored up to 0.52) are not faces
    assert all(len(d["faces"]) == 1 for d in lines)
    # the woman's face (right half of the 596x336 frame) is track 1 throughout
    assert all(d["faces"][0]["track"] == 1 and d["faces"][0]["box"][0] > 200 for d in lines)


@needs_haar
def test_haar_with_tracking_has_a_face_on_every_frame(tmp_path, samples_dir):
    lines = run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4"), "--detect-every", "2",
                                "--detector", "haar"])
    assert len(lines) == VIDEO_FRAMES and all(d["faces"] for d in lines)


@needs_haar
def test_haar_reports_no_box_inside_her_face(tmp_path, samples_dir):
    """Haar fires on her mouth on ~10 frames; it is neither a face of its own nor carried on by the tracker."""
    lines = run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4"), "--detector", "haar"])
    def inside(a, b):
        iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return iw * ih / (a[2] * a[3])
    boxes = [[f["box"] for f in d["faces"]] for d in lines]
    assert not [(i, a) for i, bs in enumerate(boxes) for a in bs for b in bs if a is not b and inside(a, b) > 0.6]
    assert sum(len(bs) > 1 for bs in boxes) <= 2  # one false box (her hands, frame 32) lasts one frame


def test_no_face_image_gives_an_empty_list(tmp_path, samples_dir, blazeface_model):
    detectors = [["--detector", "blazeface", "--detector-model", str(blazeface_model)]]
    detectors += [["--detector", "haar"]] if hasattr(cv2, "CascadeClassifier") else []
    for det in detectors:
        lines = run_json(tmp_path, ["--image", str(samples_dir / "fer_no-faces.jpg")] + det)
        assert lines == [{"frame": 0, "time": 0.0, "faces": [], "source": "fer_no-faces.jpg"}]


def test_image_prints_faces_and_records_an_annotated_copy(tmp_path, samples_dir, blazeface_model, capsys):
    rec = tmp_path / "annotated.png"
    assert main(["--image", str(samples_dir / "fer_justin.jpg"), "--model", str(TFLITE), "--record", str(rec),
                 "--detector", "blazeface", "--detector-model", str(blazeface_model)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("fer_justin.jpg: face 1 at [")
    assert cv2.imread(str(rec)).shape == (384, 381, 3)


def test_several_people_in_one_photo(samples_dir, blazeface_model):
    image = cv2.imread(str(samples_dir / "deepface_selfie-many-people.jpg"))
    with Pipeline(PipelineOptions(model=TFLITE, detector="blazeface", detector_model=blazeface_model)) as p:
        result = p.process_image(image)
    assert len(result.faces) >= 3 and len({f.track for f in result.faces}) == len(result.faces)


def test_folder_results_name_their_files_in_sorted_order_and_name_the_unreadable_one(tmp_path, samples_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, target in (("fer_justin.jpg", "b_man.jpg"), ("fer_no-faces.jpg", "a_cartoon.jpg")):
        (folder / target).write_bytes((samples_dir / name).read_bytes())
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    summary = tmp_path / "s.json"
    lines = run_json(tmp_path, ["--source", str(folder), "--summary", str(summary)])
    assert [(d["source"], len(d["faces"])) for d in lines] == [("a_cartoon.jpg", 0), ("b_man.jpg", 1)]
    s = json.loads(summary.read_text())
    assert s["corrupt_frames"] == 1 and s["unreadable"] == ["c_broken.jpg"]


def test_verify_reports_accuracy_with_the_runtime_alone(data_dir, tmp_path):
    report = tmp_path / "verify.json"
    assert main(["verify", "--model", str(TFLITE), "--data", str(data_dir / "fer2013.npz"), "--limit", "300",
                 "--json", str(report)]) == 0
    d = json.loads(report.read_text())
    assert d["n"] == 300 and d["split"] == "PrivateTest" and 0.0 <= d["accuracy"] <= 1.0
    assert len(d["confusion"]) == 7
