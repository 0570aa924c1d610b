"""What a frame costs by scene: CPU ms per frame and stage, faces per frame and walk-in delay, default schedule
against `--full-rate`, on 15 fps videos made from the sample photos and video with a little sensor noise added.

    python benchmarks/scene_cost.py --data ../shared/data --out benchmarks/scene_cost.json

Scenes (written once into --work): empty (the face-free photo, 640 wide), one face (the 596x336 sample
video), group (the 7-person selfie, 640 wide), distance (6 tfeid-dev people small in a 1280-wide street of
the face-free photo), walk-in (the empty scene for 4 s, then the smiling man slides in from the left).

CPU per frame is the steady state, without start-up: every `fer-edge` run is a child process on one core
(`taskset`, `--threads 1`), its CPU time over the frame loop read from its own summary (`cpu_seconds`: imports
and model loading left out), and the per-frame figure is the slope between a 60-frame run and a full run (the
first frames' one-off costs left out too). Runs are repeated (--repeats); the median and the spread are kept.
Also writes the machine-independent table: multiply-adds per frame (detector at its input size, classifier
per face) as the schedule ran them, so a board's time can be estimated from its own measured rate
(deploy/BOARDS.md).

    python benchmarks/scene_cost.py --counts --data ../shared/data --out .ci-out/scene_counts.json

is the short form CI runs (issue 45; ~15-25 s on CI's machine): faces, not times. Each scene's first COUNT_FRAMES
frames (the walk-in whole) through `fer-edge` with its default schedule, one run each; a still scene must report on
its frames, on average, the faces that a photo-width detection (YuNet at 640 px) finds on its frames (within
COUNT_SLACK a frame), and the walk-in must be reported within WALK_IN_FRAMES frames of `--full-rate`. Exit 1 with
one line per failed scene.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from report import write_report  # noqa: E402  benchmarks/report.py, beside this script

FPS = 15.0
NOISE = 3.0  # sensor noise, grey levels (standard deviation), redrawn on every frame
SHORT = 60  # frames of the short run; the slope is taken between it and the full run
SCENES = ("empty", "one_face", "group", "distance", "walk_in", "expressions")
COUNT_SCENES = SCENES[:5]  # --counts: the still scenes and the walk-in
WALK_IN_AT = 4.0  # seconds of empty scene before the face slides in
EXPRESSION_HOLD, EXPRESSION_FADE = 18, 8  # frames each posed expression is held, and cross-faded into the next
LOOPED = ("one_face", "empty")  # scenes played 3 times over: their per-frame cost is small against start-up noise
STILL_FRAMES = 180  # frames of a still scene (12 s)
COUNT_FRAMES = 75  # frames of a still scene in --counts: 5 s, two rechecks and many region searches
COUNT_SLACK = 0.02  # faces a frame the schedule may differ from the photo-width count, on average (1 frame in 50)
WALK_IN_FRAMES = 3  # frames the schedule may report a walk-in after --full-rate (issue 27's target)


# -- the scenes -----------------------------------------------------------------------------------

def _write_video(path: Path, frames) -> int:
    writer, n = None, 0
    for frame in frames:
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, frame.shape[1::-1])
        writer.write(frame)
        n += 1
    writer.release()
    return n


def _noisy(image: np.ndarray, count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield np.clip(image + rng.normal(0, NOISE, image.shape), 0, 255).astype(np.uint8)


def _width(image: np.ndarray, width: int) -> np.ndarray:
    h = round(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_CUBIC)


def distance_photo(data: Path) -> np.ndarray:
    """Six tfeid-dev people (different performers, frontal) standing small in a 1280x720 scene."""
    background = cv2.resize(cv2.imread(str(data / "samples" / "fer_no-faces.jpg")), (1280, 720),
                            interpolation=cv2.INTER_CUBIC)
    rows = [line.split(",") for line in (data / "tfeid-dev" / "labels.csv").read_text().splitlines()[1:]]
    people, seen = [], set()
    for file, _label, performer, _perf, view in rows:
        if performer not in seen and view.strip() == "1":
            seen.add(performer)
            people.append(cv2.imread(str(data / "tfeid-dev" / file)))
        if len(people) == 6:
            break
    for i, person in enumerate(people):
        small = cv2.resize(person, (150, 150), interpolation=cv2.INTER_AREA)
        x, y = 60 + i * 200, 300 + (i % 2) * 120
        background[y:y + 150, x:x + 150] = small
    return background


def walk_in_frames(data: Path, seed: int = 4):
    """The empty scene for WALK_IN_AT seconds, then the smiling man slides in from the left edge over
    ~0.7 s and stays, moving a little, for 3 s more."""
    room = _width(cv2.imread(str(data / "samples" / "fer_no-faces.jpg")), 640)
    face = cv2.resize(cv2.imread(str(data / "samples" / "fer_justin.jpg")), (220, 220), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    start, end = int(WALK_IN_AT * FPS), int((WALK_IN_AT + 3.7) * FPS)
    for i in range(end):
        frame = room.astype(np.float64)
        if i >= start:
            x = min(-220 + 30 * (i - start + 1), 200 + 2 * (i - start - 14) % 8)
            x0, x1 = max(x, 0), x + 220
            if x1 > 0:
                frame[120:340, x0:x1] = face[:, x0 - x:]
        yield np.clip(frame + rng.normal(0, NOISE, frame.shape), 0, 255).astype(np.uint8)


def expression_photos(data: Path, performers=tuple(f"{i:02d}" for i in range(1, 11))) -> list[np.ndarray]:
    """Each performer's theatrical poses (tfeid-dev performance 1), one photo per emotion, in the file order."""
    rows = [line.split(",") for line in (data / "tfeid-dev" / "labels.csv").read_text().splitlines()[1:]]
    photos = []
    for who in performers:
        seen = set()
        for file, label, performer, perf, _view in rows:
            if performer == who and perf in ("0", "1") and label not in seen:
                seen.add(label)
                photos.append(cv2.imread(str(data / "tfeid-dev" / file)))
    return photos


def expressions_frames(data: Path, seed: int = 5):
    """A face whose expression changes every ~1.7 s: tfeid-dev's posed photos of its ten performers, each held
    EXPRESSION_HOLD frames, then cross-faded into the next over EXPRESSION_FADE frames, while the head sways a
    few pixels (a talking person's motion). The labels change often, so holding a classification costs
    agreement here first: the scene the one-face video is too calm to be."""
    room = _width(cv2.imread(str(data / "samples" / "fer_no-faces.jpg")), 640).astype(np.float64)
    photos = [cv2.resize(p, (200, 200), interpolation=cv2.INTER_AREA).astype(np.float64)
              for p in expression_photos(data)]
    rng, i = np.random.default_rng(seed), 0
    for a, b in zip(photos, photos[1:] + photos[:1]):
        for k in range(EXPRESSION_HOLD + EXPRESSION_FADE):
            w = max(0.0, (k - EXPRESSION_HOLD + 1) / (EXPRESSION_FADE + 1))
            x, y = 220 + round(6 * np.sin(i / 5.0)), 80 + round(3 * np.sin(i / 3.7))
            frame = room.copy()
            frame[y:y + 200, x:x + 200] = (1 - w) * a + w * b
            i += 1
            yield np.clip(frame + rng.normal(0, NOISE, frame.shape), 0, 255).astype(np.uint8)


def make_scenes(data: Path, work: Path, still: int = STILL_FRAMES, scenes=SCENES) -> dict[str, Path]:
    """The `scenes` videos in `work` (made once; the one-face scene is the sample video itself), the still ones
    `still` frames long."""
    work.mkdir(parents=True, exist_ok=True)
    samples = data / "samples"
    paths = {s: work / (f"{s}.mp4" if still == STILL_FRAMES or s in ("walk_in", "expressions") else f"{s}_{still}.mp4")
             for s in SCENES}
    paths["one_face"] = samples / "fer_test.mp4"
    makers = {
        "empty": lambda: _noisy(_width(cv2.imread(str(samples / "fer_no-faces.jpg")), 640).astype(np.float64), still, 1),
        "group": lambda: _noisy(_width(cv2.imread(str(samples / "deepface_selfie-many-people.jpg")), 640)
                                .astype(np.float64), still, 2),
        "distance": lambda: _noisy(distance_photo(data).astype(np.float64), still, 3),
        "walk_in": lambda: walk_in_frames(data),
        "expressions": lambda: expressions_frames(data),
    }
    for name, make in makers.items():
        if name in scenes and not paths[name].exists():
            tmp = paths[name].with_suffix(".tmp.mp4")
            _write_video(tmp, make())
            tmp.rename(paths[name])
    return paths


# -- one measured run -----------------------------------------------------------------------------

def run_child(argv: list[str]) -> float:
    """CPU seconds (user + system) of one child process on one core."""
    cmd = (["taskset", "-c", "0"] if shutil.which("taskset") else []) + argv
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed:\n{err.read()[-3000:]}")
    return usage.ru_utime + usage.ru_stime


def fer_edge(video: Path, mode: list[str], tmp: Path, max_frames: int | None = None, loop: int = 1) -> dict:
    """One run: CPU seconds, its summary and its per-frame JSON lines."""
    js, summary = tmp / "out.jsonl", tmp / "summary.json"
    argv = [sys.executable, "-m", "fer_edge.runtime.cli", "--source", str(video), "--threads", "1", "--window",
            "off", "--quiet", "--force", "--json", str(js), "--summary", str(summary), "--loop", str(loop), *mode]
    if max_frames:
        argv += ["--max-frames", str(max_frames)]
    cpu = run_child(argv)
    lines = [json.loads(x) for x in js.read_text().splitlines()]
    return {"cpu_s": cpu, "summary": json.loads(summary.read_text()), "lines": lines}


def loop_cpu(run: dict) -> float:
    """CPU seconds of a run's frame loop (its summary's cpu_seconds); the whole process's where the summary has
    none (code before it had one: scene_paired.py's earlier commits)."""
    return run["summary"].get("cpu_seconds", run["cpu_s"])


def scene_row(video: Path, mode: list[str], repeats: int, loop: int) -> dict:
    """Median CPU ms per frame (slope between a SHORT-frame run and a full run) over `repeats`, and the spread."""
    with tempfile.TemporaryDirectory(prefix="scene-cost-") as d:
        slopes, full = [], None
        for _ in range(repeats):
            short = fer_edge(video, mode, Path(d), SHORT)
            full = fer_edge(video, mode, Path(d), loop=loop)
            n = len(full["lines"])
            slopes.append((loop_cpu(full) - loop_cpu(short)) * 1000 / (n - SHORT))
    s = full["summary"]
    faces = [len(x["faces"]) for x in full["lines"]]
    return {"cpu_ms": round(statistics.median(slopes), 3), "cpu_ms_runs": [round(x, 3) for x in slopes],
            "frames": len(faces), "faces_per_frame": round(sum(faces) / len(faces), 3), "stage_ms": s["stage_ms"],
            "schedule": {"frames": len(faces), **s["schedule"]}, "emotion_share": s["emotion_share"],
            "lines": full["lines"]}


# -- multiply-adds --------------------------------------------------------------------------------

def onnx_macs(path: str | os.PathLike, shape: tuple[int, ...]) -> int:
    """Multiply-adds of an ONNX model's Conv, MatMul and Gemm nodes for one input of `shape` (shapes inferred;
    a convolution whose output shape is not inferred keeps its input's height and width, stride 1)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
        dim.Clear()
        dim.dim_value = value
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight, out = shapes[node.input[1]], shapes.get(node.output[0]) or []
            if not all(out):
                out = [1, weight[0], *shapes[node.input[0]][2:]]
            total += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm") and shapes.get(node.input[0]) and shapes.get(node.input[1]):
            total += int(np.prod(shapes[node.input[0]])) * shapes[node.input[1]][-1]
    return total


def padded(width: int, height: int) -> tuple[int, int]:
    """YuNet's input is padded to a multiple of 32 each way (OpenCV's FaceDetectorYN)."""
    return -(-width // 32) * 32, -(-height // 32) * 32


def scene_macs(video: Path, schedule: dict, yunet: Path, classifier_macs: int) -> dict:
    """Multiply-adds per frame as the schedule ran: YuNet at each input size it was given (full detections at
    the stream width 320, those at the photo width 640, region searches by their input pixels at the 96x96
    rate per pixel, motion searches counted at the stream size, their upper bound), plus the classifier per
    classified face."""
    cap = cv2.VideoCapture(str(video))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    at = lambda width: onnx_macs(yunet, (1, 3, *padded(width, round(h * width / w))[::-1])) if w > width \
        else onnx_macs(yunet, (1, 3, *padded(w, h)[::-1]))
    stream, fine, region = at(320), at(640), onnx_macs(yunet, (1, 3, 96, 96))
    frames = max(schedule["frames"], 1)
    full = schedule["full_detections"] - schedule["fine_detections"]
    regions = schedule.get("region_pixels", schedule["region_detections"] * 96 * 96) * region / (96 * 96)
    detect = (full * stream + schedule["fine_detections"] * fine + regions
              + schedule["motion_searches"] * stream) / frames
    classify = schedule["classifications_per_frame"] * classifier_macs
    return {"detector_M": round(detect / 1e6, 2), "classifier_M": round(classify / 1e6, 2),
            "total_M": round((detect + classify) / 1e6, 2), "yunet_M_at": {"stream": round(stream / 1e6, 2),
            "photo": round(fine / 1e6, 2), "region": round(region / 1e6, 2)}}


# -- comparisons ----------------------------------------------------------------------------------

def first_face(lines: list[dict]) -> int | None:
    return next((x["frame"] for x in lines if x["faces"]), None)


def agreement(a: list[dict], b: list[dict]) -> dict:
    """Frames where both report a face (of those where `b`, the reference, does), where their labels agree, and
    where they agree of those where the reference's face is sure (issue 45's measure)."""
    ref = {x["frame"]: x["faces"] for x in b}
    both = [(x["faces"], ref[x["frame"]]) for x in a if x["frame"] in ref]
    with_face = [(fa, fb) for fa, fb in both if fb]
    same_face = sum(bool(fa) for fa, fb in with_face)
    same = [bool(fa) and fa[0]["label"] == fb[0]["label"] for fa, fb in with_face]
    sure = [s for s, (fa, fb) in zip(same, with_face) if fb[0].get("sure", True)]
    n = max(len(with_face), 1)
    return {"frames_with_face_ref": len(with_face), "face_kept": round(same_face / n, 4),
            "label_same": round(sum(same) / n, 4), "sure_frames_ref": len(sure),
            "label_same_sure": round(sum(sure) / max(len(sure), 1), 4)}


def share_gap(a: dict, b: dict) -> float:
    """The largest difference between two runs' shares of sure faces per emotion (summary emotion_share)."""
    return round(max([abs(a[k] - b.get(k, 0.0)) for k in a] or [0.0]), 4)


def add_macs(rows: dict, paths: dict) -> None:
    """Each row's multiply-adds per frame (YuNet and the default classifier, counted on their ONNX graphs)."""
    from fer_edge.runtime.faces.detectors import YuNetDetector
    from fer_edge.runtime.recognize.pipeline import DEFAULT_MODEL
    from fer_edge.runtime.model.shipped import shipped_file

    yunet, clf = shipped_file(YuNetDetector.FILE), shipped_file(DEFAULT_MODEL.replace(".tflite", ".onnx"))
    clf_macs = onnx_macs(clf, (1, 48, 48, 1))
    for key, row in rows.items():
        row["macs"] = {**scene_macs(paths[key.split("/")[0]], row["schedule"], yunet, clf_macs),
                       "classifier_M_per_face": round(clf_macs / 1e6, 2)}


def tutorial_ms(video: Path, keras_model: Path, repeats: int, path: str | None = None) -> dict:
    """The tutorials' loop (Haar on every frame, Keras `predict` per face; convert/bench_keras.py) on one core:
    CPU ms per frame of the loop itself (TensorFlow's start-up left out, as the slope leaves out fer-edge's)."""
    cmd = (["taskset", "-c", "0"] if shutil.which("taskset") else []) + [
        sys.executable, "-m", "fer_edge.convert.bench_keras", str(keras_model), "--threads", "1", "--tutorial",
        str(video), "--repeats", str(repeats)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if path:  # an OpenCV 4 with Haar cascades, for the tutorials' process only (OpenCV 5 has none)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"the tutorials' loop failed:\n{out.stderr[-2000:]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])["tutorial"]
    return {"cpu_ms": round(1000 / d["frames_per_cpu_s"], 2), "faces": d["faces"], "frames": d["frames"]}


def compare(rows: dict) -> dict:
    """Per scene: faces and labels against --full-rate's, and the walk-in delay in frames."""
    out = {}
    for key in rows:
        scene, mode = key.split("/")
        ref = rows.get(f"{scene}/full-rate")
        if mode != "default" or ref is None:
            continue
        out[scene] = agreement(rows[key]["lines"], ref["lines"])
        out[scene]["share_gap"] = share_gap(rows[key]["emotion_share"], ref["emotion_share"])
        a, b = first_face(rows[key]["lines"]), first_face(ref["lines"])
        if scene == "walk_in" and a is not None and b is not None:
            out[scene]["walk_in_delay_frames"] = a - b
    return out


def step_row(doc: dict) -> dict:
    """One run's figures for the step-by-step table: per scene (default schedule) CPU ms, faces a frame, region
    detections and classifications a frame; the one-face labels and the walk-in delay against --full-rate."""
    out = {}
    for key, r in doc["rows"].items():
        scene, mode = key.split("/")
        if mode == "default":
            out[scene] = {"cpu_ms": r["cpu_ms"], "faces_per_frame": r["faces_per_frame"],
                          "regions_per_frame": round(r["schedule"]["region_detections"] / r["frames"], 3),
                          "classifications_per_frame": r["schedule"]["classifications_per_frame"]}
    c = doc.get("against_full_rate", {})
    out["one_face_label_same_sure"] = c.get("one_face", {}).get("label_same_sure")
    out["one_face_share_gap"] = c.get("one_face", {}).get("share_gap")
    out["walk_in_delay_frames"] = c.get("walk_in", {}).get("walk_in_delay_frames")
    return out


def steps_markdown(steps: dict) -> list[str]:
    scenes = [s for s in SCENES if any(s in row for row in steps.values())]
    lines = ["", "Step by step (default schedule; each step a run of this script on that code, the load noted below): "
             "CPU ms a frame, faces a frame, region detections and classifications a frame; the one-face video's "
             "labels where `--full-rate` is sure, and the walk-in delay.", "",
             "| step | " + " | ".join(scenes) + " | one-face labels (sure) | share gap | walk-in delay |",
             "|---|" + "---|" * (len(scenes) + 3)]
    for name, row in steps.items():
        cells = [f"{row[s]['cpu_ms']:.2f} ms, {row[s]['faces_per_frame']:.2f} faces, {row[s]['regions_per_frame']:.2f} "
                 f"reg, {row[s]['classifications_per_frame']:.2f} cls" if s in row else "" for s in scenes]
        sure, gap = row.get("one_face_label_same_sure"), row.get("one_face_share_gap")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'' if sure is None else f'{sure:.2%}'} | "
                     f"{'' if gap is None else f'{gap:.1%}'} | {row.get('walk_in_delay_frames') or 0} |")
    return lines


def markdown(doc: dict) -> list[str]:
    load = doc.get("load")
    lines = ["# What a frame costs, by scene", "", "Written by `python benchmarks/scene_cost.py` (see its docstring): "
             f"CPU ms per frame at one thread on one core ({doc['machine']}), the slope between a {SHORT}-frame "
             "run and a full run; median of the repeats, all repeats in brackets (the machine was shared"
             + (f": load average {load['start']} at the start, {load['end']} at the end, on "
                f"{os.cpu_count()} cores" if load else "") + "). This "
             "run: `python benchmarks/scene_cost.py --data ../shared/data --repeats 3 --tutorial "
             "models/fer-vgg.keras --tutorial-path DIR --history benchmarks/scene_cost.json --paired JSON`, DIR "
             "holding `pip install --target DIR 'opencv-python-headless<5'` for the tutorials' Haar (this OpenCV 5 "
             "has none), the history the previous run's result (its step rows), JSON scene_paired.py's. The stage columns are "
             "the full run's own summary (wall-clock ms per frame, so inflated by the other work on the machine).", "",
             "| scene | mode | CPU ms/frame | runs | faces/frame | detect | track | classify | read | schedule |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in doc["rows"].items():
        scene, mode = key.split("/")
        st, sc = r["stage_ms"], r.get("schedule") or {}
        what = (f"full {sc.get('full_detections')}, region {sc.get('region_detections')}, motion "
                f"{sc.get('motion_searches')}, skipped {sc.get('frames_skipped')}, classify/frame "
                f"{sc.get('classifications_per_frame')}") if sc else ""
        lines.append(f"| {scene} | {mode} | {r['cpu_ms']:.2f} | {r['cpu_ms_runs']} | {r['faces_per_frame']:.2f} | "
                     f"{st['detect']:.2f} | {st['track']:.2f} | {st['classify']:.2f} | {st['read']:.2f} | {what} |")
    lines += ["", "Multiply-adds per frame (millions), machine-independent: YuNet at each input size the schedule gave it "
              "(whole frame at 320 px wide, at 640 for small faces, the crops around tracked faces by their pixels at "
              "the 96x96 rate, motion searches counted at the 320-px size, their upper bound) and the default classifier per classified face; "
              "see deploy/BOARDS.md for turning them into a board's time.", "",
              "| scene | mode | detector | classifier | total |", "|---|---|---|---|---|"]
    for key, r in doc["rows"].items():
        m = r["macs"]
        lines.append(f"| {key.split('/')[0]} | {key.split('/')[1]} | {m['detector_M']:.1f} | {m['classifier_M']:.1f} | "
                     f"{m['total_M']:.1f} |")
    m = next(iter(doc["rows"].values()))["macs"]
    lines += ["", f"YuNet: {m['yunet_M_at']['region']:.1f} M multiply-adds at 96x96; the classifier "
              f"{m['classifier_M_per_face']:.1f} M per face."]
    lines += ["", "Against `--full-rate` (frames where it reports a face):", "",
              "| scene | face kept | same label | same label where --full-rate is sure | largest share gap | "
              "walk-in delay (frames) |", "|---|---|---|---|---|---|"]
    for scene, c in doc["against_full_rate"].items():
        if not c["frames_with_face_ref"]:
            lines.append(f"| {scene} | no face in either | | | | |")
            continue
        lines.append(f"| {scene} | {c['face_kept']:.2%} | {c['label_same']:.2%} | {c['label_same_sure']:.2%} "
                     f"({c['sure_frames_ref']} frames) | {c['share_gap']:.1%} | {c.get('walk_in_delay_frames', '')} |")
    if len(doc.get("steps", {})) > 1:
        lines += steps_markdown(doc["steps"])
    if "paired" in doc:
        pd = doc["paired"]
        lines += ["", f"Paired runs (`benchmarks/scene_paired.py --against {pd['against']}`): {pd['against']} and this "
                  "commit's schedule run in turn on the same scenes, so both see the same load (load average "
                  f"{pd['load'][0]} at the start, {pd['load'][1]} at the end): CPU ms a frame, median (all runs).", "",
                  "| scene | code | CPU ms/frame | runs |", "|---|---|---|---|"]
        for key, v in pd["cpu_ms"].items():
            lines.append(f"| {key.split('/')[0]} | {key.split('/')[1]} | {v['median']:.2f} | {v['runs']} |")
    if "tutorial" in doc:
        t = doc["tutorial"]
        lines += ["", f"The tutorials' loop (Haar on every frame, Keras `predict` per face, one core) on the one-face "
                  f"video: {t['cpu_ms']:.1f} CPU ms per frame ({t['faces']} faces on {t['frames']} frames); fer-edge "
                  + ", ".join(f"{k.removeprefix('speedup_')} {v}x" for k, v in t.items() if k.startswith("speedup_"))
                  + " less CPU per frame."]
    return lines


def photo_width_count(video: Path, every: int = 15) -> int:
    """Faces a photo-width detection (YuNet at 640 px, as photos are searched) finds on every `every`-th frame of
    a video: the median."""
    from fer_edge.runtime.faces.detectors import detect_at, make_detector

    detector, cap, counts, i = make_detector("yunet", threads=1), cv2.VideoCapture(str(video)), [], 0
    while i < COUNT_FRAMES:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == 0:
            counts.append(len(detect_at(detector, frame, None, 640)))
        i += 1
    cap.release()
    detector.close()
    return int(statistics.median(counts))


def check_counts(paths: dict, scenes: list[str]) -> tuple[dict, list[str]]:
    """The face-count guard: per scene, what the default schedule reported against what it must (see the
    docstring); and one line per failure."""
    out, failures = {}, []
    with tempfile.TemporaryDirectory(prefix="scene-counts-") as d:
        for scene in scenes:
            if scene == "walk_in":
                got, ref = (first_face(fer_edge(paths[scene], mode, Path(d))["lines"]) for mode in ([], ["--full-rate"]))
                ok = got is not None and ref is not None and got - ref <= WALK_IN_FRAMES
                out[scene] = {"first_face": got, "first_face_full_rate": ref, "ok": ok}
                if not ok:
                    failures.append(f"{scene}: the face was first reported on frame {got}, --full-rate's on {ref} "
                                    f"(at most {WALK_IN_FRAMES} frames later expected)")
                continue
            lines = fer_edge(paths[scene], [], Path(d), COUNT_FRAMES)["lines"]
            faces = [len(x["faces"]) for x in lines]
            mean, ref = sum(faces) / max(len(faces), 1), photo_width_count(paths[scene])
            ok = abs(mean - ref) <= COUNT_SLACK
            out[scene] = {"frames": len(faces), "faces_per_frame": round(mean, 3), "photo_width_faces": ref,
                          "min": min(faces), "max": max(faces), "ok": ok}
            if not ok:
                failures.append(f"{scene}: {mean:.2f} faces a frame on {len(faces)} frames, a photo-width detection "
                                f"finds {ref} (within {COUNT_SLACK} expected)")
    return out, failures


def machine_line() -> str:
    """The CPU and the SIMD features that decide the classifier's speed (convert/bench_report.py's reading)."""
    from fer_edge.convert.bench_report import cpu_model, simd_flags

    return f"{cpu_model()}, {platform.machine()}, SIMD: {', '.join(simd_flags()) or 'none listed'}"


def run_counts(paths: dict, scenes: list[str], out: str) -> int:
    """The face-count guard (--counts): its report, one line per scene on stderr, exit 1 on a failure."""
    doc, failures = check_counts(paths, scenes)
    write_report(out, doc)
    for scene, row in doc.items():
        print(f"{scene:9s} {json.dumps(row)}", file=sys.stderr)
    for line in failures:
        print(f"scene_cost --counts: {line}", file=sys.stderr)
    return 1 if failures else 0


def measure_rows(paths: dict, scenes: list[str], a: argparse.Namespace) -> dict:
    """Each scene in each of --modes (--full-rate only on --full-rate-scenes): scene_row's figures."""
    modes = {"default": [], "full-rate": ["--full-rate"], "today": []}
    full_rate_scenes = a.full_rate_scenes.split(",") if a.full_rate_scenes else scenes
    rows = {}
    for scene in scenes:
        for mode in a.modes.split(","):
            if mode == "full-rate" and scene not in full_rate_scenes:
                continue
            r = rows[f"{scene}/{mode}"] = scene_row(paths[scene], modes[mode], a.repeats, 3 if scene in LOOPED else 1)
            print(f"{scene:9s} {mode:9s} {r['cpu_ms']:7.3f} ms {r['cpu_ms_runs']} faces/frame "
                  f"{r['faces_per_frame']:.2f} {r['schedule']}", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER_EDGE_DATA", "../shared/data"))
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "fer-edge-scenes"),
                   help="where the scene videos are written (once)")
    p.add_argument("--out", default=str(Path(__file__).with_name("scene_cost.json")))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scenes", help=f"default: {','.join(SCENES)} ({','.join(COUNT_SCENES)} with --counts)")
    p.add_argument("--modes", default="default,full-rate")
    p.add_argument("--tutorial", metavar="KERAS_MODEL", help="also run the tutorials' Haar + Keras loop on the "
                   "one-face video with this model (TensorFlow; e.g. models/fer-vgg.keras)")
    p.add_argument("--tutorial-path", metavar="DIR", help="put DIR first on the tutorials' loop's PYTHONPATH (e.g. "
                   "pip install --target DIR 'opencv-python-headless<5' where the installed OpenCV 5 has no Haar)")
    p.add_argument("--full-rate-scenes", help="the scenes that also run --full-rate (default: every scene)")
    p.add_argument("--steps", nargs="*", default=[], metavar="NAME=JSON", help="earlier runs of this script (on "
                   "earlier code) to list step by step beside this one in the Markdown")
    p.add_argument("--history", metavar="JSON", help="an earlier result of this script (benchmarks/scene_cost.json): "
                   "its step-by-step rows come first in the table")
    p.add_argument("--paired", metavar="JSON", help="benchmarks/scene_paired.py's result, listed in the Markdown")
    p.add_argument("--step-name", default="this commit", help="this run's name in the step-by-step table")
    p.add_argument("--counts", action="store_true", help="the face-count guard only (CI): faces, not times; exit 1 "
                   "when a scene loses or gains faces")
    a = p.parse_args(argv)
    scenes = a.scenes.split(",") if a.scenes else list(COUNT_SCENES if a.counts else SCENES)
    paths = make_scenes(Path(a.data), Path(a.work), COUNT_FRAMES if a.counts else STILL_FRAMES, scenes)
    if a.counts:
        return run_counts(paths, scenes, a.out)
    load = {"start": round(os.getloadavg()[0], 2)}
    rows = measure_rows(paths, scenes, a)
    comparisons = compare(rows)
    add_macs(rows, paths)
    doc = {"machine": machine_line(), "python": platform.python_version(),
           "rows": {k: {kk: vv for kk, vv in v.items() if kk != "lines"} for k, v in rows.items()},
           "against_full_rate": comparisons, "load": load}
    if a.tutorial:
        doc["tutorial"] = tutorial_ms(paths["one_face"], Path(a.tutorial), a.repeats, a.tutorial_path)
        for mode in ("default", "full-rate"):
            if f"one_face/{mode}" in rows:
                doc["tutorial"][f"speedup_{mode}"] = round(doc["tutorial"]["cpu_ms"] / rows[f"one_face/{mode}"]["cpu_ms"], 1)
    load["end"] = round(os.getloadavg()[0], 2)
    steps = {name: json.loads(Path(path).read_text()) for name, path in (x.split("=", 1) for x in a.steps)}
    history = json.loads(Path(a.history).read_text()).get("steps", {}) if a.history else {}
    doc["steps"] = {**history, **{name: step_row(d) for name, d in {**steps, a.step_name: doc}.items()}}
    if a.paired:
        doc["paired"] = json.loads(Path(a.paired).read_text())
    write_report(a.out, doc, markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
