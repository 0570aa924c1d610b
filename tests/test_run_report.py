"""fer-edge --report FILE.html (issue 39, point 3): one self-contained page about a run. The sample video's
report is opened in headless Chromium with the network off and its charts checked in the DOM and in pixels; a
folder of 200 photos made here from a sample photo gets one row per photo with a face; hostile file names are
escaped; bad --report values fail in one line before any work. Chromium tests skip with the reason where it
is not installed (.ci/run installs it)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fer_edge.runtime.media.drawing import LABEL_COLOURS

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
WINDOW = (1000, 1400)
HOSTILE = "<img src=x onerror=alert(1)>&\"'.jpg"


def fer_edge(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_edge.runtime.cli", *argv, "--threads", "1"],
                          capture_output=True, text=True, timeout=600)


def offline_chromium(args: list[str], page: Path, profile: Path) -> subprocess.CompletedProcess:
    """Chromium with every network request sent to a dead proxy and every host name unresolvable."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
           "--disable-background-networking", "--disable-component-update", "--proxy-server=socks5://127.0.0.1:9",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
           f"--window-size={WINDOW[0]},{WINDOW[1]}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def assert_self_contained(text: str) -> None:
    """Nothing a browser would fetch: no tag with a src/href attribute or an http(s) address (the page's text,
    file names included, is escaped and holds no tag), no CSS url() or @import in its style."""
    for tag in re.findall(r"<[^>]+>", text):
        assert not re.search(r"\s(src|href)\s*=|https?://|url\(", tag, re.I), f"a tag fetches something: {tag!r}"
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    assert "url(" not in style and "@import" not in style
    assert "<script" not in text  # no script at all: the charts are SVG


@pytest.fixture(scope="module")
def video_report(samples_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    proc = fer_edge("--source", str(samples_dir / "fer_test.mp4"), "--report", str(out / "run.html"),
                    "--summary", str(out / "summary.json"))
    assert proc.returncode == 0, proc.stderr
    return out / "run.html", json.loads((out / "summary.json").read_text())


def test_video_report_holds_the_summary_timeline_share_tracks_model_and_command(video_report):
    page, summary = video_report
    text = page.read_text(encoding="utf-8")
    assert_self_contained(text)
    assert f"<td>frames</td><td>{summary['frames']}</td>" in text
    for t in summary["tracks"]:
        assert f'<svg class="timeline" data-track="{t["track"]}"' in text
        dominant = t["dominant"] or "(no sure frame)"
        assert f"<tr class=\"track\"><td>{t['track']}</td><td>{t['frames']}</td><td>{dominant}</td>" in text
    for label, share in summary["emotion_share"].items():  # each bar's width is its share of 500 px
        width = float(re.search(rf'<rect class="bar" data-label="{label}" x="\d+" y="\d+" width="([\d.]+)"',
                                text).group(1))
        assert width == pytest.approx(500 * share, abs=0.1)
    # the visits that ended (a track of the sample video lasts its 4.6 s): one row each, as --visits writes them
    visits = re.findall(r'<tr class="visit"><td>(\d+)</td><td>([\d.]+)</td><td>([\d.]+)</td>', text)
    assert summary["visits"] >= 1 and len(visits) == summary["visits"]
    assert "fer-vgg_int8.tflite" in text and "agreement with fp32" in text and "Figures from fer-vgg_CARD.md" in text
    assert re.search(r"<pre><code>fer-edge --source \S+fer_test\.mp4 --report \S+run\.html", text)


@pytest.mark.slow
def test_video_report_renders_its_charts_in_offline_chromium(video_report, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt install chromium; .ci/run installs it)")
    page, summary = video_report
    dom = offline_chromium(["--dump-dom"], page, tmp_path / "profile-dom").stdout
    # the DOM Chromium built: one timeline per track with a line of every frame per label, the share bars
    lines = re.findall(r'<polyline data-label="([^"]+)" points="([^"]+)"', dom)
    assert len(lines) == 7 * len(summary["tracks"])
    assert all(len(points.split()) == summary["tracks"][0]["frames"] for _, points in lines[:7])
    assert len(re.findall(r'<rect class="bar"', dom)) == 7

    shot = tmp_path / "report.png"
    done = offline_chromium([f"--screenshot={shot}"], page, tmp_path / "profile-shot")
    assert shot.is_file(), done.stderr[-2000:]
    png = cv2.imread(str(shot)).astype(np.int16)
    assert png.shape[:2] == (WINDOW[1], WINDOW[0]) and png.std() > 10
    # pixels of the dominant emotion's colour: its share bar (a solid block) and its timeline line
    labels = list(summary["emotion_share"])
    top = max(labels, key=summary["emotion_share"].get)
    colour = np.array(LABEL_COLOURS[labels.index(top)], np.int16)  # BGR, as OpenCV reads the screenshot
    mask = np.abs(png - colour).max(axis=2) < 12
    rows = np.flatnonzero(mask.any(axis=1))
    bar_rows = [r for r in rows if mask[r].sum() > 200]  # the bar: rows where the colour runs wide
    line_rows = [r for r in rows if 0 < mask[r].sum() < 200 and r > max(bar_rows, default=0) + 40]
    assert bar_rows, f"the share chart's {top} bar is not drawn"
    # the line climbs most of the plot's 118 px and runs across its 846 px (the legend's square is ~12 px)
    columns = np.flatnonzero(mask[line_rows].any(axis=0)) if line_rows else np.zeros(1, int)
    assert len(line_rows) > 60 and np.ptp(columns) > 500, \
        f"the timeline's {top} line is not drawn ({len(line_rows)} rows, {np.ptp(columns)} px wide)"
    print(f"report screenshot: {len(bar_rows)} rows of the {top} bar; its timeline line {len(line_rows)} rows "
          f"high, {np.ptp(columns)} px wide")


def _photo_folder(samples_dir: Path, folder: Path, n: int) -> tuple[list[str], list[str]]:
    """n photos from the sample portrait with small variations (shift, brightness, mirror, scale) and every 10th
    without a face (the sample's face covered), and one with a hostile name; returns (with face, without)."""
    base = cv2.imread(str(samples_dir / "fer_justin.jpg"))
    rng = np.random.default_rng(0)
    face, no_face = [], []
    for i in range(n):
        img = np.roll(base, (int(rng.integers(-12, 13)), int(rng.integers(-12, 13))), axis=(0, 1))
        img = cv2.convertScaleAbs(img, alpha=float(rng.uniform(0.85, 1.15)), beta=float(rng.uniform(-15, 15)))
        if i % 3 == 0:
            img = img[:, ::-1]
        img = cv2.resize(img, None, fx=float(rng.uniform(0.8, 1.0)), fy=float(rng.uniform(0.8, 1.0)))
        name = HOSTILE if i == 7 else f"photo-{i:03d}.jpg"
        if i % 10 == 9:
            img = np.full_like(img, int(rng.integers(40, 220)))
            no_face.append(name)
        else:
            face.append(name)
        assert cv2.imencode(".jpg", img)[0]
        (folder / name).write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    return face, no_face


@pytest.mark.slow
def test_folder_report_has_one_row_per_photo_with_a_face_and_escapes_names(samples_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    with_face, without = _photo_folder(samples_dir, photos, 200)
    page = tmp_path / "photos.html"
    proc = fer_edge("--source", str(photos), "--report", str(page), "--json", str(tmp_path / "photos.jsonl"))
    assert proc.returncode == 0, proc.stderr
    found = {line["source"] for line in map(json.loads, open(tmp_path / "photos.jsonl")) if line["faces"]}
    assert found == set(with_face), (sorted(set(with_face) - found), sorted(found - set(with_face)))
    text = page.read_text(encoding="utf-8")
    assert_self_contained(text)
    rows = re.findall(r'<tr class="photo"><td>([^<]*)</td><td>(\d+)</td>', text)
    assert len(rows) == len(with_face) == 180
    assert {name for name, _ in rows} == {HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                                          .replace('"', "&quot;").replace("'", "&#x27;") if n == HOSTILE else n
                                          for n in with_face}
    assert "<img" not in text  # the hostile name is text, not markup


def test_report_refuses_a_wrong_suffix_and_an_existing_file(samples_dir, tmp_path):
    video = str(samples_dir / "fer_test.mp4")
    proc = fer_edge("--source", video, "--report", str(tmp_path / "run.txt"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"FerEdgeError: --report {tmp_path / 'run.txt'}: expected a .html file name"]
    old = tmp_path / "old.html"
    old.write_text("keep me")
    proc = fer_edge("--source", video, "--report", str(old), "--max-frames", "3")
    assert proc.returncode == 2 and "already exists: pass --force" in proc.stderr
    assert old.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["old.html"]
    proc = fer_edge("--source", video, "--report", str(old), "--max-frames", "3", "--force")
    assert proc.returncode == 0 and old.read_text().startswith("<!DOCTYPE html>")


def test_a_long_run_is_kept_in_bounded_memory():
    from fer_edge.runtime.core.results import FaceResult, FrameResult
    from fer_edge.runtime.media.report import MAX_TIMELINES, TIMELINE_POINTS, ReportSink, page

    labels = ("happy", "sad")
    sink = ReportSink(labels)
    for i in range(10_000):  # one long track, then many short ones
        faces = [FaceResult((0, 0, 10, 10), "happy", {"happy": 0.75, "sad": 0.25}, 1)]
        faces += [FaceResult((20, 0, 10, 10), "sad", {"happy": 0.0, "sad": 1.0}, 2 + i // 50)] if i >= 5000 else []
        sink.write(None, FrameResult(i, i / 10, faces))
    long = sink.timelines[1].all()
    assert TIMELINE_POINTS <= len(long) < 2 * TIMELINE_POINTS
    assert sum(p[3] for p in long) == 10_000  # every frame is in one averaged point
    assert len({p[3] for p in long[:-1]}) == 1  # of equal weight: the start of the run as sharp as its end
    assert all(p[1] == pytest.approx([0.75, 0.25]) for p in long) and long[-1][0] == pytest.approx(999.9, abs=1)
    assert len(sink.timelines) == MAX_TIMELINES and len(sink.left_out) == 100 + 1 - MAX_TIMELINES
    summary = {"frames": 10_000, "seconds": 1.0, "fps": 1.0, "stopped_by": "end of source", "faces": 15_000,
               "frames_with_face": 10_000, "corrupt_frames": 0, "reconnects": 0, "stage_ms": {}, "tracks": [],
               "emotion_share": {"happy": 0.6, "sad": 0.4}}
    text = page(sink, summary, {"path": "m.tflite"}, "fer-edge --source x.mp4", "x.mp4")
    assert text.count('<svg class="timeline"') == MAX_TIMELINES and f"{len(sink.left_out)} more tracks" in text


def test_unsure_bands_cover_the_unsure_stretch_of_their_track_only():
    """0.36 s of unsure frames in a 10 s run shade about 0.36 s of the axis, not a tenth of it per point."""
    from fer_edge.runtime.media.report import LEFT, W, timeline_svg

    labels = ("happy", "sad")
    points = [[9.0 + i * 0.04, [0.5, 0.5], 0.0, 1.0] for i in range(10)]  # one track: 10 unsure frames at 25 fps
    svg = timeline_svg(1, points, labels, t_end=10.0)
    widths = [float(w) for w in re.findall(r'class="unsure" x="[\d.]+" y="\d+" width="([\d.]+)"', svg)]
    axis = W - LEFT - 10
    shaded_s = sum(w - 0.8 for w in widths) * 10.0 / axis  # (each band overlaps the next by 0.8 px)
    assert len(widths) == 10 and 0.3 <= shaded_s <= 0.45, (widths, shaded_s)
