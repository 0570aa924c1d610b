"""fer-train's settings and its run folder: TrainConfig, the checks on it, --resume's restored config, the
folder's files (state.json, checkpoint.keras, model.keras, history.jsonl) and the command line's parser.
(The steps of a run: train_data.py, train_model.py, train.py's fit loop, train_outputs.py.)"""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

from fer_edge.runtime.core.errors import FerEdgeError
from fer_edge.runtime.core.fileio import check_out_folder

DESCRIPTION = "fer-train: train a FER model on FER2013 (or FER+) and write a .keras file carrying its metadata."
STATE = "state.json"

CHECKPOINT = "checkpoint.keras"

BEST = "model.keras"

HISTORY = "history.jsonl"



@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "edge"
    labels: str = "fer2013"
    soft: bool = False  # FER+ vote distributions as targets
    epochs: int = 60
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 2  # epochs of linear warm-up before the cosine decay
    patience: int = 15
    label_smoothing: float = 0.1
    class_weight: str = "sqrt"
    seed: int = 0
    input_size: int = 48
    value_range: tuple = (0.0, 1.0)
    equalize: bool = False
    crop_margin: float = 0.0
    augment: bool = True
    teacher: tuple = ()  # fer-edge .keras references to distil from (averaged); empty: no distillation
    temperature: float = 4.0  # distillation temperature T
    soft_weight: float = 0.8  # weight w of the teacher's soft targets; 1 - w goes to the hard labels
    teacher_views: int = 0  # K > 0: teacher targets on K fixed augmented views per face (consistent teaching)
    strong_augment: bool = False  # wider poses, framings, blur and low resolution (Augment.strong)
    init: str = ""  # start from this fer-edge .keras reference's weights (same architecture) instead of random ones
    soup: int = 0  # K > 0: greedy weight average of the K best epochs (and --init), kept if it validates higher
    ferplus_mix: float = 0.0  # weight of FER+'s ten-annotator vote distribution in each training face's label
    limit: int = 0  # keep only this many training faces (tiny runs, tests)
    strategy: str = "auto"  # auto | mirrored | none
    workers: int = 1
    force: bool = False
    resume: bool = False
    command: str = field(default="", repr=False)


def check_out(cfg: TrainConfig) -> Path:
    """Refuse an unusable --out before anything is read or written (it writes nothing itself)."""
    out = check_out_folder(cfg.out, force=cfg.force or cfg.resume,  # a resume continues what is there
                           remedy="pass --force to overwrite it, or --resume to continue its run")
    if cfg.resume:
        if not (out / STATE).is_file():
            raise FerEdgeError(f"--resume: {out} holds no {STATE} from an earlier run")
        if not (out / CHECKPOINT).is_file():
            raise FerEdgeError(f"--resume: {out} holds {STATE} but no {CHECKPOINT}")
    return out


def prepare_out(cfg: TrainConfig) -> Path:
    """The first write of a run: create --out, clearing an earlier run's files under --force."""
    out = check_out(cfg)
    if cfg.resume:
        return out
    out.mkdir(parents=True, exist_ok=True)
    from fer_edge.training.distill import CACHE
    from fer_edge.training.soup import EPOCHS

    for name in (STATE, CHECKPOINT, BEST, HISTORY, CACHE):
        (out / name).unlink(missing_ok=True)
    for name in ("eval", EPOCHS):  # stale reports (or another run's epochs) would mislead
        shutil.rmtree(out / name, ignore_errors=True)
    return out


def restore_config(cfg: TrainConfig, log) -> TrainConfig:
    """--resume: the configuration saved in state.json wins, so a resumed run is the same run. Only where the
    data lives, --out and --workers are taken from this invocation (folders move), and --soup when given (it
    changes nothing that trains); the command line is appended to the recorded one."""
    path = Path(cfg.out) / STATE
    try:
        saved = json.loads(path.read_text())["config"]
        known = {f.name for f in fields(TrainConfig)}
        saved = {k: v for k, v in saved.items() if k in known}
        first = saved.get("command") or ""  # keep the command that started the run, and each resume after it
        command = f"{first} [then: {cfg.command}]" if first and cfg.command and cfg.command not in first else first or cfg.command
        saved.update(data=cfg.data, out=cfg.out, resume=True, force=False, workers=cfg.workers, command=command)
        if cfg.soup:
            saved["soup"] = cfg.soup
        restored = TrainConfig(**{**saved, "value_range": tuple(saved["value_range"]),
                                  "teacher": tuple(saved.get("teacher", ()))})
    except (ValueError, KeyError, TypeError) as exc:
        raise FerEdgeError(f"--resume: {path} is not a fer-train state file ({type(exc).__name__}: {exc})") from None
    changed = [f.name for f in fields(TrainConfig) if f.name not in ("data", "out", "resume", "force", "workers", "command", "soup")
               and getattr(cfg, f.name) != getattr(restored, f.name) and getattr(cfg, f.name) != getattr(TrainConfig, f.name, None)]
    if changed:
        log(f"note: --resume keeps the saved {', '.join(changed)}: options given now for them are ignored")
    return restored


def validate(cfg: TrainConfig) -> None:
    from fer_edge.training.architectures import ARCHITECTURES

    if cfg.arch not in ARCHITECTURES:
        raise FerEdgeError(f"unknown architecture {cfg.arch!r}: expected one of {', '.join(ARCHITECTURES)}")
    if cfg.strategy not in ("auto", "mirrored", "none"):
        raise FerEdgeError(f"unknown --strategy {cfg.strategy!r}: expected auto, mirrored or none")
    for name in ("epochs", "batch_size", "workers"):
        if getattr(cfg, name) < 1:
            raise FerEdgeError(f"--{name.replace('_', '-')} must be at least 1, found {getattr(cfg, name)}")
    if cfg.limit < 0:
        raise FerEdgeError(f"--limit must be 0 (all faces) or a positive count, found {cfg.limit}")
    if cfg.lr <= 0:
        raise FerEdgeError(f"--lr must be positive, found {cfg.lr}")
    if cfg.soft and cfg.labels != "ferplus":
        raise FerEdgeError("--soft needs vote distributions: use it with --labels ferplus")
    if cfg.temperature <= 0:
        raise FerEdgeError(f"--temperature must be positive, found {cfg.temperature}")
    if not 0 <= cfg.soft_weight <= 1:
        raise FerEdgeError(f"--soft-weight must be between 0 and 1, found {cfg.soft_weight}")
    if cfg.soup < 0:
        raise FerEdgeError(f"--soup must be 0 (off) or the number of best epochs to try averaging, found {cfg.soup}")
    if not 0 <= cfg.ferplus_mix <= 1:
        raise FerEdgeError(f"--ferplus-mix must be between 0 and 1, found {cfg.ferplus_mix}")
    if cfg.ferplus_mix and (cfg.labels != "fer2013" or cfg.soft):
        raise FerEdgeError("--ferplus-mix mixes FER+ votes into FER2013 labels: it needs --labels fer2013, without --soft")
    if cfg.teacher_views < 0:
        raise FerEdgeError(f"--teacher-views must be 0 (targets on the plain faces) or a count, found {cfg.teacher_views}")
    if cfg.teacher_views and not cfg.teacher:
        raise FerEdgeError("--teacher-views sets how a teacher labels the faces: it needs --teacher")
    if cfg.strong_augment and not cfg.augment:
        raise FerEdgeError("--strong-augment and --no-augment contradict each other: give one of them")
    if cfg.teacher_views and not cfg.augment:
        raise FerEdgeError("--teacher-views labels augmented views of the faces: it cannot be used with --no-augment")


def build_parser() -> argparse.ArgumentParser:
    from fer_edge.training.architectures import ARCHITECTURES

    p = argparse.ArgumentParser(prog="fer-train", description=DESCRIPTION,
                                epilog="Research-only steps (soup, WiSE-FT, FER+ mixing, teacher views): docs/training.md")
    run = p.add_argument_group("run", "every run: where the data is and where the run goes")
    run.add_argument("--data", required=True, help="fer2013.csv, fer2013.npz, an image-folder root, or a data folder")
    run.add_argument("--out", required=True, help="output folder (model.keras, checkpoint, history, eval/)")
    run.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    run.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    data = p.add_argument_group("data", "which labels and faces to train on, and how they are prepared; the "
                                "defaults train on FER2013's labels with augmentation")
    data.add_argument("--labels", default="fer2013", choices=["fer2013", "ferplus"])
    data.add_argument("--soft", action="store_true", help="FER+ only: train on vote distributions")
    data.add_argument("--class-weight", default="sqrt", choices=["none", "sqrt", "balanced"])
    data.add_argument("--normalize", default="0,1", choices=["0,1", "-1,1"], help="model input value range")
    data.add_argument("--equalize", action="store_true", help="histogram-equalise faces (recorded in the model)")
    data.add_argument("--crop-margin", type=float, default=0.0, help="runtime crop margin recorded in the model")
    data.add_argument("--no-augment", action="store_true")
    data.add_argument("--strong-augment", action="store_true",
                      help="wider rotations, shifts and zooms, stronger light changes, blur and low-resolution copies "
                           "(faces further from FER2013's tight, sharp crops); best with --teacher-views, where the "
                           "teacher labels each such view")
    data.add_argument("--limit", type=int, default=0, help="use only this many training faces (quick runs)")
    data.add_argument("--workers", type=int, default=1, help="threads preparing batches")
    arch = p.add_argument_group("architecture", "which network: pick one for the device's budget of multiply-adds "
                                "(docs/training.md compares them)")
    arch.add_argument("--arch", default="edge", help=f"architecture: {', '.join(ARCHITECTURES)} (default edge)")
    arch.add_argument("--input-size", type=int, default=48)
    arch.add_argument("--init", default="", metavar="MODEL",
                      help="start from this fer-edge .keras reference's weights (same --arch), e.g. to train a "
                           "finished run further on a new schedule")
    sched = p.add_argument_group("schedule", "how long and how fast: the defaults suit a run from scratch; change "
                                 "them for a fine-tune (--init) or a different time budget")
    sched.add_argument("--epochs", type=int, default=60)
    sched.add_argument("--batch-size", type=int, default=128)
    sched.add_argument("--lr", type=float, default=2e-3)
    sched.add_argument("--patience", type=int, default=15)
    sched.add_argument("--label-smoothing", type=float, default=0.1)
    sched.add_argument("--seed", type=int, default=0)
    sched.add_argument("--strategy", default="auto", choices=["auto", "mirrored", "none"])
    _research_arguments(p)
    return p


def _research_arguments(p: argparse.ArgumentParser) -> None:
    """The groups past a plain run: distillation, label mixing and weight averaging."""
    kd = p.add_argument_group("distillation", "when a small student learns from a bigger trained model (--teacher): "
                              "how fer-lite learnt from fer-vgg")
    kd.add_argument("--teacher", action="append", metavar="MODEL",
                    help="distil from this fer-edge .keras reference (repeat for an ensemble, averaged)")
    kd.add_argument("--temperature", type=float, default=4.0, help="distillation temperature (default 4)")
    kd.add_argument("--soft-weight", type=float, default=0.8,
                    help="weight of the teacher's soft targets against the hard labels (default 0.8)")
    kd.add_argument("--teacher-views", type=int, default=0, metavar="K",
                    help="label K fixed augmented views of every face with the teacher, and train the student on "
                         "those views (consistent teaching; costs K teacher passes once). Default 0: the teacher "
                         "labels the plain faces and the student sees fresh augmentations")
    mix = p.add_argument_group("label mixing", "research: when FER2013's single-annotator labels should be softened "
                               "with FER+'s ten votes (needs ferplus/fer2013new.csv beside the data)")
    mix.add_argument("--ferplus-mix", type=float, default=0.0, metavar="W",
                     help="blend each training face's FER2013 label with FER+'s ten-annotator vote distribution of the "
                          "same face, at weight W (needs a data folder with ferplus/fer2013new.csv; validation stays "
                          "on FER2013's labels). Default 0: FER2013's labels alone")
    avg = p.add_argument_group("averaging", "research: when the last point of accuracy is worth keeping every epoch's "
                               "weights (model soup; WiSE-FT is python -m fer_edge.training.wise)")
    avg.add_argument("--soup", type=int, default=0, metavar="K",
                     help="after training, average the weights of the K best epochs (and of --init) greedily, and keep "
                          "the average if it scores higher on the validation split (model soup; keeps each epoch's "
                          "weights in DIR/epochs). With --resume it starts keeping them from the next epoch. Default 0: off")

