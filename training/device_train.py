"""Train where the GPU is: pack the data small enough to travel, then train for a fixed number of minutes.

    python -m fer_edge.training.device_train pack --data ../shared/data --out .device/faces.npz      # here
    python -m fer_edge.training.device_train train --data .device/faces.npz --out "$OUT/run" --minutes 8   # there

`pack` writes FER2013's Training and PublicTest faces as WebP (quality 85 by default: about 0.74 KB a face,
mean absolute error about 2 grey levels) in one .npz, so that the data and the carried wheels fit beside the
working tree in the 64 MiB a device call takes; PrivateTest stays home (the shipped models are scored on it
there, at full quality). `train` decodes the faces and runs fer-train's own training (same code, same records)
in two parts: the two warm-up epochs, whose learning rates do not depend on the run's length, measure the
seconds an epoch takes; the run is then given as many epochs as the minutes left allow (--epochs and --patience
set to that number in its state.json) and resumed. Every improvement on PublicTest rewrites model.keras in
--out at once, so a run stopped by the time limit still returns its best epoch; at --minutes the run is stopped
(SIGALRM) and the figures are printed. docs/training-on-a-gpu.md says how to launch it with the device tool.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import time
from pathlib import Path

import numpy as np

from fer_edge.runtime.cli_args import fix_argv
from fer_edge.runtime.core.errors import cli_main, FerEdgeError
from fer_edge.runtime.core.fileio import atomic_output

KEEP_SPLITS = (0, 1)  # Training, PublicTest: what training reads (PrivateTest is scored at home)
WARMUP = 2  # fer-train's warm-up epochs (TrainConfig.warmup): their learning rates do not depend on --epochs
RESERVE_S = 45  # the minutes' end kept for fer-eval on PublicTest and the last saves


def pack(data: str, out: Path, quality: int = 85, limit: int = 0, force: bool = False, log=print) -> Path:
    """FER2013's Training and PublicTest faces as WebP bytes in one .npz (webp, offsets, emotion, usage)."""
    import cv2

    from fer_edge.runtime.data.datasets import load_dataset

    if out.exists() and not force:
        raise FerEdgeError(f"{out} already exists: pass --force to overwrite it")
    if not 1 <= quality <= 100:
        raise FerEdgeError(f"--quality must be 1..100 (100: lossless WebP), found {quality}")
    ds = load_dataset(data)
    keep = np.flatnonzero(np.isin(ds.split, KEEP_SPLITS))
    if limit:  # a dry run's subset: the first faces of each split kept
        keep = np.concatenate([keep[ds.split[keep] == s][: limit if s == 0 else max(64, limit // 4)] for s in KEEP_SPLITS])
    params = [cv2.IMWRITE_WEBP_QUALITY, 101 if quality == 100 else quality]
    blobs = [cv2.imencode(".webp", ds.images[i], params)[1] for i in keep]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out, force=True) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, webp=np.concatenate(blobs), offsets=offsets, emotion=ds.labels[keep].astype(np.uint8),
                     usage=ds.split[keep].astype(np.uint8), quality=np.int64(quality))
    log(f"packed {len(keep)} faces (Training and PublicTest of {ds.source}) as WebP quality {quality}: "
        f"{out.stat().st_size / 2**20:.1f} MiB in {out}")
    return out


def unpack(packed: Path, out: Path) -> Path:
    """The packed faces decoded into a FER2013 .npz (pixels, emotion, usage) that fer-train reads."""
    import cv2

    try:
        z = np.load(packed, allow_pickle=False)
        webp, offsets, emotion, usage = z["webp"], z["offsets"], z["emotion"], z["usage"]
    except (OSError, ValueError, KeyError) as exc:
        raise FerEdgeError(f"{packed}: not a device_train pack file ({type(exc).__name__}: {exc}): "
                           f"expected the output of device_train pack") from None
    pixels = np.stack([cv2.imdecode(webp[a:b], cv2.IMREAD_GRAYSCALE) for a, b in zip(offsets[:-1], offsets[1:])])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, pixels=pixels, emotion=emotion, usage=usage)
    return out


class TimeUp(Exception):
    """--minutes reached: training stops, the best epoch is in model.keras."""


def _stop_at(deadline: float) -> None:
    def raise_time_up(signum, frame):
        raise TimeUp()

    signal.signal(signal.SIGALRM, raise_time_up)
    signal.alarm(max(1, int(deadline - time.time())))


def _history(run: Path) -> list[dict]:
    path = run / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _extend(run: Path, epochs: int) -> None:
    """Give the saved run `epochs` epochs (and as much patience): what `fer-train --epochs N --patience N` sets."""
    path = run / "state.json"
    state = json.loads(path.read_text())
    state["config"].update(epochs=epochs, patience=epochs)
    with atomic_output(path, force=True) as tmp:
        tmp.write_text(json.dumps(state, indent=1))


def _drop_figures(run: Path) -> None:
    """fer-eval's PNGs are left out of what comes back: the device tool returns 8 files, and these are drawn
    again at home (fer-eval on the full-quality data)."""
    for png in (run / "eval").glob("*.png"):
        png.unlink()


def epochs_for(seconds_left: float, epoch_seconds: float, done: int, most: int) -> int:
    """How many epochs in all the time left allows (at least the ones done, at most `most`)."""
    return max(done, min(most, done + math.floor(max(0.0, seconds_left) / max(epoch_seconds, 1e-3))))


def train_for(args, log=print) -> dict:
    """Warm up, size the schedule to the minutes left, resume the run to its end or to the deadline."""
    from fer_edge.training.train import TrainConfig, train

    start = time.time()
    deadline = start + 60 * args.minutes
    run = Path(args.out)
    data = unpack(Path(args.data), Path(args.work) / "fer2013.npz")
    log(f"unpacked {args.data} in {time.time() - start:.0f}s")
    command = "python -m fer_edge.training.device_train " + " ".join(shlex.quote(a) for a in args.argv)
    cfg = TrainConfig(data=str(data), out=str(run), arch=args.arch, epochs=WARMUP, patience=WARMUP,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed, limit=args.limit,
                      teacher=tuple(args.teacher or ()), workers=args.workers, force=args.force, command=command)
    _stop_at(deadline - RESERVE_S / 3)  # the final evaluation is quick on a GPU; the saves are atomic
    stopped = False
    try:
        train(cfg, log=log)
        _drop_figures(run)
        rows = _history(run)
        epoch_s = max(r["seconds"] for r in rows[1:] or rows)  # the second epoch: no compilation in it
        compile_s = max(0.0, rows[0]["seconds"] - epoch_s)  # the resumed run compiles its steps again
        epochs = epochs_for(deadline - time.time() - RESERVE_S - compile_s, epoch_s, len(rows), args.max_epochs)
        log(f"schedule: {epoch_s:.1f}s an epoch (+{compile_s:.0f}s compiling), {(deadline - time.time()) / 60:.1f} "
            f"min left: {epochs} epochs in all")
        if epochs > len(rows):
            _extend(run, epochs)
            train(TrainConfig(data=str(data), out=str(run), workers=args.workers, resume=True, command=command), log=log)
            _drop_figures(run)
    except TimeUp:
        stopped = True
        log(f"--minutes {args.minutes:g} reached: stopped; {run / 'model.keras'} holds the best epoch so far")
    finally:
        signal.alarm(0)
    return figures(run, time.time() - start, stopped, log)


def figures(run: Path, seconds: float, stopped: bool, log=print) -> dict:
    rows = _history(run)
    best = max(rows, key=lambda r: r.get("val_accuracy", 0)) if rows else {}
    doc = {"epochs": len(rows), "best_epoch": best.get("epoch"), "best_val_accuracy": best.get("val_accuracy"),
           "stopped_by_time": stopped, "minutes": round(seconds / 60, 2),
           "epoch_seconds": [r.get("seconds") for r in rows], "model": str(run / "model.keras")}
    report = run / "eval" / "report.json"
    if report.is_file():
        splits = json.loads(report.read_text())["splits"]
        # fer-eval runs when a part ends: the warm-up's figures if time stopped the rest
        doc["eval_after_warmup" if stopped else "eval"] = {s: round(r["accuracy"], 4) for s, r in splits.items()}
    log("figures: " + json.dumps(doc))
    return doc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_edge.training.device_train", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="here: FER2013's Training and PublicTest faces as a small WebP .npz")
    pk.add_argument("--data", required=True, help="FER2013 (a folder holding fer2013.npz, the .npz or the .csv)")
    pk.add_argument("--out", type=Path, required=True, help="the pack file to write (in a git-ignored folder)")
    pk.add_argument("--quality", type=int, default=85, help="WebP quality, 100 = lossless (default 85)")
    pk.add_argument("--limit", type=int, default=0, help="keep only this many Training faces (dry runs)")
    pk.add_argument("--force", action="store_true", help="overwrite --out")
    tr = sub.add_parser("train", help="there: fer-train for --minutes, its schedule sized to them")
    tr.add_argument("--data", required=True, help="the pack file")
    tr.add_argument("--out", required=True, help="run folder (model.keras after every improvement), e.g. $OUT/run")
    tr.add_argument("--minutes", type=float, required=True, help="wall-clock minutes for all of it")
    tr.add_argument("--work", default="/tmp/fer-edge-device", help="where the faces are unpacked")
    tr.add_argument("--arch", default="vgg")
    tr.add_argument("--batch-size", type=int, default=128)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--limit", type=int, default=0, help="use only this many training faces (dry runs)")
    tr.add_argument("--teacher", action="append", metavar="MODEL", help="distil from this .keras (repeatable)")
    tr.add_argument("--max-epochs", type=int, default=400, help="the schedule's ceiling (default 400)")
    tr.add_argument("--workers", type=int, default=8, help="threads preparing batches (default 8)")
    tr.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    return p


@cli_main
def main(argv=None) -> int:
    argv = fix_argv(argv)
    args = build_parser().parse_args(argv)
    if args.command == "pack":
        pack(args.data, args.out, args.quality, args.limit, args.force, log=lambda m: print(m, flush=True))
        return 0
    if args.minutes <= 0:
        raise FerEdgeError(f"--minutes must be positive, found {args.minutes}")
    args.argv = argv
    train_for(args, log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
