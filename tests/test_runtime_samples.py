"""fer-edge on the real sample photos and video (../shared/data/samples via $FER_EDGE_DATA).

The classifier is the tiny committed test model: these tests are about faces, frames and outputs; the
labels it gives mean nothing. Accuracy is `fer-edge verify`'s job, checked on FER2013 below.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from fer_edge.runtime.cli import main
from fer_edge.runtime.pipeline import Pipeline, PipelineOptions

TFLITE = Path(__file__).parent / "assets" / "tiny_fer.tflite"
VIDEO_FRAMES = 115  # fer_test.mp4


def run_json(tmp_path, argv) -> list[dict]:
    out = tmp_path / "out.jsonl"
    assert main(argv + ["--model", str(TFLITE), "--json", str(out), "--window", "off", "--quiet"]) == 0
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_blazeface_finds_the_face_on_every_frame(tmp_path, samples_dir, blazeface_model):
    lines = run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4"), "--detector", "blazeface",
                                "--detector-model", str(blazeface_model), "--threads", "1"])
    assert [d["frame"] for d in lines] == list(range(VIDEO_FRAMES))
    # exactly her face on every frame: the blurred street lights behind her (scored up to 0.52) are not faces
    assert all(len(d["faces"]) == 1 for d in lines)
    # the woman's face (right half of the 596x336 frame) is track 1 throughout
    assert all(d["faces"][0]["track"] == 1 and d["faces"][0]["box"][0] > 200 for d in lines)


def test_haar_with_tracking_has_a_face_on_every_frame(tmp_path, samples_dir):
    lines = run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4"), "--detect-every", "2"])
    assert len(lines) == VIDEO_FRAMES and all(d["faces"] for d in lines)


def test_haar_reports_no_box_inside_her_face(tmp_path, samples_dir):
    """Haar fires on her mouth on ~10 frames; it is neither a face of its own nor carried on by the tracker."""
    lines = run_json(tmp_path, ["--source", str(samples_dir / "fer_test.mp4")])
    def inside(a, b):
        iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return iw * ih / (a[2] * a[3])
    boxes = [[f["box"] for f in d["faces"]] for d in lines]
    assert not [(i, a) for i, bs in enumerate(boxes) for a in bs for b in bs if a is not b and inside(a, b) > 0.6]
    assert sum(len(bs) > 1 for bs in boxes) <= 2  # one false box (her hands, frame 32) lasts one frame


def test_no_face_image_gives_an_empty_list(tmp_path, samples_dir, blazeface_model):
    for det in (["--detector", "haar"], ["--detector", "blazeface", "--detector-model", str(blazeface_model)]):
        lines = run_json(tmp_path, ["--image", str(samples_dir / "fer_no-faces.jpg"), "--force"] + det)
        assert lines == [{"frame": 0, "time": 0.0, "faces": []}]


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


def test_folder_source_skips_unreadable_images(tmp_path, samples_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("fer_justin.jpg", "fer_no-faces.jpg"):
        (folder / name).write_bytes((samples_dir / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    summary = tmp_path / "s.json"
    lines = run_json(tmp_path, ["--source", str(folder), "--summary", str(summary)])
    assert len(lines) == 2 and json.loads(summary.read_text())["corrupt_frames"] == 1


def test_verify_reports_accuracy_with_the_runtime_alone(data_dir, tmp_path):
    report = tmp_path / "verify.json"
    assert main(["verify", "--model", str(TFLITE), "--data", str(data_dir / "fer2013.npz"), "--limit", "300",
                 "--json", str(report)]) == 0
    d = json.loads(report.read_text())
    assert d["n"] == 300 and d["split"] == "PrivateTest" and 0.0 <= d["accuracy"] <= 1.0
    assert len(d["confusion"]) == 7
