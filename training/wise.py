"""Weight-space interpolation of a fine-tuned run with the model it started from (WiSE-FT).

    python -m fer_edge.training.wise RUN --data DATA [--min-val-accuracy A] [--alphas 0.1,0.2,...]

A run started with `fer-train --init MODEL` (for instance a fine-tune on FER+-blended labels,
`--ferplus-mix`) and MODEL lie in one basin: every weighted average (1 - a) * MODEL + a * RUN is a model of
the same architecture and cost, and moves smoothly from what MODEL learnt to what the run learnt
(Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"). For each 0 < a < 1, batch norm is measured
again on training faces (as `--soup` does; a = 0 and a = 1 are the two models as trained), and each a is
scored on the validation split (PublicTest) against FER2013's labels and, where the FER+ relabels are in the
data folder, against their majority vote.

Kept: among the a whose FER2013 validation accuracy is at least --min-val-accuracy (default: that of
a = 1, the run's own weights), the one with the highest FER+ validation accuracy (FER2013's without FER+).
Only the validation split is read for the choice. RUN/model.keras is replaced by the kept average (the run's
own is kept as RUN/finetuned.keras, the endpoint of any later call); the table goes into the model's
provenance and the card, and RUN/eval is written again. a = 1 is the run exactly as it was: kept when
nothing else qualifies, so the call never leaves a run worse on its own terms.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from fer_edge.runtime.cli_args import fix_argv
from fer_edge.runtime.core.errors import FerEdgeError, cli_main, require
from fer_edge.runtime.core.fileio import atomic_output, sha256_file

FINETUNED = "finetuned.keras"
ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))


def endpoints(run: Path):
    """(model holding the fine-tuned weights, its metadata, the --init weights, the fine-tuned weights, the
    fine-tuned file, the run's config), the two checked to be the same architecture."""
    from fer_edge.convert.source import load_keras
    from fer_edge.training.train_config import BEST, STATE

    state = run / STATE
    if not state.is_file():
        raise FerEdgeError(f"{run}: no {STATE}: expected a fer-train run folder")
    cfg = json.loads(state.read_text())["config"]
    if not cfg.get("init"):
        raise FerEdgeError(f"{run} was not started from --init: there is no model to interpolate it with")
    init = Path(cfg["init"])
    if not init.is_file():
        raise FerEdgeError(f"{run} started from --init {init}, which is no longer there: expected that model file")
    tuned = run / FINETUNED if (run / FINETUNED).is_file() else run / BEST
    if not tuned.is_file():
        raise FerEdgeError(f"{run}: neither {FINETUNED} nor {BEST}: expected a finished fer-train run")
    model, meta = load_keras(tuned)
    if tuned.name == BEST and "wise" in meta.provenance:
        raise FerEdgeError(f"{tuned} is already an interpolation and {run / FINETUNED}, the run's own weights, is "
                           f"missing: expected it beside {BEST}")
    recorded = meta.provenance.get("init", {}).get("sha256")
    if recorded and recorded != sha256_file(init):
        raise FerEdgeError(f"{init} has changed since {run} started from it (sha256 differs from the run's "
                           f"record): expected the same file")
    start = load_keras(init)[0].get_weights()
    if [w.shape for w in start] != [w.shape for w in model.get_weights()]:
        raise FerEdgeError(f"{init} and {tuned} are different architectures: expected the run's own --init model")
    return model, meta, start, model.get_weights(), tuned, cfg


def blend(model, start: list, tuned: list, a: float, x_bn: np.ndarray) -> None:
    """Leave (1 - a) * start + a * tuned in `model`, its batch norm measured again on `x_bn`. The ends are the
    two trained models exactly as they are (their own batch norm): a = 1 scores, and keeps, the run itself."""
    from fer_edge.training.soup import recalibrate_bn

    if a in (0.0, 1.0):
        model.set_weights(tuned if a == 1.0 else start)
        return
    model.set_weights([(1 - a) * s + a * t for s, t in zip(start, tuned)])
    recalibrate_bn(model, x_bn)


def interpolate(model, start: list, tuned: list, alphas, x_bn, scorers: dict, log=print) -> list[dict]:
    """One row per a: {'alpha': a, name: validation accuracy for each of `scorers` (name -> (x, y))}."""
    from fer_edge.training.soup import accuracy

    rows = []
    for a in alphas:
        blend(model, start, tuned, a, x_bn)
        row = {"alpha": a, **{name: accuracy(model, x, y) for name, (x, y) in scorers.items()}}
        log(f"wise: a={a:.2f}  " + "  ".join(f"{k} {100 * v:.2f}%" for k, v in row.items() if k != "alpha"))
        rows.append(row)
    return rows


def choose(rows: list[dict], floor: float, key: str) -> dict:
    """The row with the highest `key` among those whose 'fer2013' accuracy is at least `floor`; a = 1 (the run
    itself) when none is."""
    ok = [r for r in rows if r["fer2013"] >= floor]
    if not ok:
        return next(r for r in rows if r["alpha"] == 1.0)
    return max(ok, key=lambda r: (r[key], r["fer2013"], r["alpha"]))


def wise(run: Path, data: str, alphas=ALPHAS, floor: float | None = None, log=print) -> dict:
    require("keras", "train")
    from fer_edge.runtime.data.datasets import ferplus_csv, ferplus_majority_as, load_dataset, read_ferplus
    from fer_edge.runtime.model.preprocess import preprocess
    from fer_edge.training.evaluate import evaluate_to
    from fer_edge.training.soup import BN_FACES
    from fer_edge.training.train_config import BEST, HISTORY
    from fer_edge.training.train_outputs import save_model

    if any(not 0 <= a <= 1 for a in alphas) or 1.0 not in alphas:
        raise FerEdgeError(f"--alphas must lie in 0..1 and include 1 (the run itself), found {', '.join(map(str, alphas))}")
    model, meta, start, tuned, tuned_path, cfg = endpoints(run)
    ds = load_dataset(data, label_set=meta.label_set.name)
    if not ds.has_split("PublicTest"):
        raise FerEdgeError(f"{ds.source} has no PublicTest split: expected FER2013 with its official split")
    spec = meta.preprocess
    val = ds.subset("PublicTest")
    scorers = {"fer2013": (preprocess(val.images, spec), val.labels)}
    plus_csv = ferplus_csv(Path(ds.source).parent)
    if plus_csv.is_file() and meta.label_set.name == "fer2013":  # joined to the faces already read
        plus = ferplus_majority_as(read_ferplus(plus_csv, ds), meta.labels).subset("PublicTest")
        scorers["ferplus"] = (preprocess(plus.images, spec), plus.labels)
    train = ds.subset("Training")
    pick = np.sort(np.random.default_rng(cfg.get("seed", 0)).permutation(len(train))[:BN_FACES])
    x_bn = preprocess(train.images[pick], spec)
    rows = interpolate(model, start, tuned, sorted(set(alphas)), x_bn, scorers, log)
    own = next(r for r in rows if r["alpha"] == 1.0)["fer2013"]
    floor = own if floor is None else floor
    key = "ferplus" if "ferplus" in scorers else "fer2013"
    best = choose(rows, floor, key)
    record = {"init": cfg["init"], "finetuned": FINETUNED, "alpha": best["alpha"], "floor": floor,
              "chosen_by": f"highest PublicTest {key} accuracy with PublicTest fer2013 accuracy >= {floor:.4f}",
              "table": rows}
    a = best["alpha"]
    blend(model, start, tuned, a, x_bn)
    if tuned_path.name != FINETUNED:
        with atomic_output(run / FINETUNED, force=True) as tmp:  # the endpoint of any later call
            shutil.copyfile(tuned_path, tmp)
    provenance = {**meta.provenance, "wise": record}
    save_model(model, run / BEST, meta.replace(provenance=provenance, figures={"val_accuracy": best["fer2013"],
                                                                              "wise_alpha": a}))
    log(f"wise: kept a={a:.2f} ({', '.join(f'{k} {100 * best[k]:.2f}%' for k in scorers)} on PublicTest; "
        f"floor {100 * floor:.2f}%) -> {run / BEST}")
    evaluate_to(run / BEST, ds, run / "eval", history=run / HISTORY, log=log, update_metadata=True)
    return record


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_edge.training.wise", description=__doc__.splitlines()[0])
    p.add_argument("run", help="a fer-train run folder started with --init")
    p.add_argument("--data", required=True, help="the data folder (fer2013.npz, and ferplus/ when at hand)")
    p.add_argument("--min-val-accuracy", type=float, default=None, metavar="A",
                   help="lowest FER2013 PublicTest accuracy (0..1) a kept average may have (default: the run's own)")
    p.add_argument("--alphas", default=",".join(f"{a:g}" for a in ALPHAS),
                   help="weights of the run against its --init model to try, comma-separated (must include 1)")
    a = p.parse_args(fix_argv(argv))
    try:
        alphas = [float(v) for v in a.alphas.split(",")]
    except ValueError:
        raise FerEdgeError(f"--alphas: expected comma-separated numbers in 0..1, found {a.alphas!r}") from None
    if a.min_val_accuracy is not None and not 0 <= a.min_val_accuracy <= 1:
        raise FerEdgeError(f"--min-val-accuracy must be a fraction in 0..1, found {a.min_val_accuracy}")
    run = Path(a.run)
    if not run.is_dir():
        raise FerEdgeError(f"{run}: no such run folder")
    wise(run, a.data, alphas, a.min_val_accuracy, log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
