"""The examples under examples/ run, on the shared sample photos and video (issue 28)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *argv], capture_output=True, text=True,
                          timeout=600)


def test_photo_prints_each_face_and_draws_them(samples_dir, tmp_path):
    import cv2

    out = tmp_path / "annotated.jpg"
    proc = run("photo.py", str(samples_dir / "fer_justin.jpg"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("face at (") and ": happy (happy" in proc.stdout
    assert cv2.imread(str(out)).shape == cv2.imread(str(samples_dir / "fer_justin.jpg")).shape
    proc = run("photo.py", str(samples_dir / "fer_no-faces.jpg"))
    assert proc.returncode == 0 and proc.stdout.strip() == "no face"
    proc = run("photo.py", str(tmp_path / "missing.jpg"))
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1].startswith("ImageError: ")


def test_webcam_loop_runs_headless_on_the_sample_video(samples_dir):
    proc = run("webcam.py", str(samples_dir / "fer_test.mp4"), "--no-window", "--max-frames", "20")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"frame {i}" for i in range(20)]
    assert all("no face" not in line for line in lines)  # one face on every frame of this video


def test_web_app_answers_an_upload_with_its_faces_and_a_non_image_with_400(samples_dir):
    pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    spec = importlib.util.spec_from_file_location("web_app_example", EXAMPLES / "web_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with TestClient(module.app) as client:
        photo = (samples_dir / "fer_justin.jpg").read_bytes()
        r = client.post("/emotions", files={"file": ("justin.jpg", photo, "image/jpeg")})
        assert r.status_code == 200, r.text
        (face,) = r.json()["faces"]
        assert face["label"] == "happy" and len(face["box"]) == 4
        r = client.post("/emotions", files={"file": ("notes.txt", b"not an image", "text/plain")})
        assert r.status_code == 400 and "not a decodable image" in r.json()["detail"]
    module.recognizer.close()
