"""A shipped model's sure/unsure threshold and its risk-coverage figures (issue 38).

    python -m fer_edge.training.confidence --name fer-vgg --data ../shared/data --out models

Stamps the threshold (runtime.data.confidence: keep 70% of PublicTest faces by confidence, on the fp32
reference's probabilities) into the metadata of every shipped file of NAME, rewriting the metadata only: the
weights are untouched, so the golden outputs and parity gates hold; the golden file's and the exports' record of
the reference's sha256 follow the reference's new bytes. Then measures the runtime file (NAME_int8.tflite) on
FER2013 PrivateTest and on tfeid-dev photos (found and framed by the runtime's pipeline, as
benchmarks/framing_accuracy.py does) and writes NAME_confidence.json, which the model card reads.
`ship.py` runs it after shipping; the card is never typed by hand.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fer_edge.runtime.core.errors import FerEdgeError, cli_main
from fer_edge.runtime.core.fileio import atomic_output, sha256_file
from fer_edge.runtime.data.confidence import SPLIT, at_threshold, choose_threshold, risk_coverage
from fer_edge.runtime.model.metadata import read_metadata, write_metadata

EXPORTS = ("_int8.tflite", "_fp32.tflite", "_int8.onnx")  # the shipped files besides NAME.keras
PHOTOS = "tfeid-dev"


def threshold_for(out: Path, name: str, data: str) -> dict:
    """The threshold fer-convert wrote into the exports; else chosen now on the fp32 export (the reference's
    probabilities, without TensorFlow)."""
    for suffix in EXPORTS:
        meta = read_metadata(out / f"{name}{suffix}")
        if meta is not None and meta.threshold is not None:
            return meta.confidence
    from fer_edge.runtime.data.datasets import load_dataset
    from fer_edge.runtime.model.backends import Classifier

    clf = Classifier(out / f"{name}_fp32.tflite", threads=1)
    faces = load_dataset(data, label_set=clf.meta.label_set.name).subset(SPLIT)
    return choose_threshold(clf.predict_batched(faces.images), faces.labels)


def stamp(out: Path, name: str, confidence: dict) -> tuple[str, str]:
    """The threshold into NAME.keras and every export; the new reference sha256 into the golden file and into
    each export's provenance (test_gate holds them equal)."""
    keras = out / f"{name}.keras"
    old = sha256_file(keras)
    files = [keras, *(out / f"{name}{suffix}" for suffix in EXPORTS)]
    if all(read_metadata(f).confidence == confidence for f in files):
        return old, old  # stamped already: the files are left as they are (a rewrite would change their bytes)
    write_metadata(keras, read_metadata(keras).replace(confidence=confidence))
    new = sha256_file(keras)
    for suffix in EXPORTS:
        f = out / f"{name}{suffix}"
        meta = read_metadata(f)
        prov = dict(meta.provenance)
        if prov.get("source_sha256") == old:
            prov["source_sha256"] = new
        write_metadata(f, meta.replace(confidence=confidence, provenance=prov))
    golden = out / f"{name}_golden.npz"
    if golden.is_file():
        with np.load(golden, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if str(arrays["model_sha256"]) == old:
            arrays["model_sha256"] = np.array(new)
            with atomic_output(golden, force=True) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
    return old, new


def measure(out: Path, name: str, data: str, confidence: dict) -> dict:
    """Risk-coverage and the threshold's coverage and accuracy on PrivateTest and tfeid-dev, for NAME_int8.tflite."""
    from fer_edge.runtime.data.datasets import load_dataset
    from fer_edge.runtime.recognize.pipeline import Pipeline, PipelineOptions

    model = out / f"{name}_int8.tflite"
    t = float(confidence["threshold"])
    doc = {"model": model.name, "confidence": confidence, "sets": {}}
    with Pipeline(PipelineOptions(model=model, threads=1)) as pipe:
        faces = load_dataset(data, label_set=pipe.classifier.meta.label_set.name).subset("PrivateTest")
        probs = pipe.classifier.predict_batched(faces.images)
        conf, right = probs.max(1), probs.argmax(1) == faces.labels
        doc["sets"]["PrivateTest"] = {"risk_coverage": risk_coverage(conf, right), **at_threshold(conf, right, t)}
        if (Path(data) / PHOTOS).is_dir():
            conf, right, missed = photo_confidence(pipe, Path(data) / PHOTOS)
            doc["sets"][PHOTOS] = {"risk_coverage": risk_coverage(conf, right), **at_threshold(conf, right, t),
                                   "no_face": missed}
    return doc


def photo_confidence(pipe, folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Per photo with a face: the top probability of its highest-scoring face and whether its label is right;
    and how many photos had no face found."""
    import cv2

    from fer_edge.runtime.data.datasets import read_photo_labels

    conf, right, missed = [], [], 0
    for path, y in read_photo_labels(folder, pipe.labels, None):
        image = cv2.imread(str(path))
        found = pipe.process_image(image).faces if image is not None else []
        if not found:
            missed += 1
            continue
        face = max(found, key=lambda f: f.score)
        conf.append(max(face.probs.values()))
        right.append(pipe.labels.index(face.label) == y)
    return np.array(conf), np.array(right, bool), missed


SECTION = "## Sure or not: the confidence threshold"


def card_section(out: Path, name: str) -> list[str]:
    """The model card's section from NAME_confidence.json (none when the file is missing)."""
    path = out / f"{name}_confidence.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    c = doc["confidence"]
    lines = ["", SECTION, "",
             f"Every `{name}_*` file stores the threshold **{c['threshold']:.4f}** in its metadata: a face whose top "
             f"probability reaches it is *sure* (`\"sure\": true`), and shares, dominant emotions, Home Assistant and "
             f"visits count sure faces only (`--min-confidence P` overrides it). Rule: {c['rule']} (chosen on "
             f"{c['n']} faces the model was not trained on; there it keeps {c['coverage']:.1%}). Measured on "
             f"`{doc['model']}` with `python -m fer_edge.training.confidence --name {name} --data ../shared/data`; "
             f"{PHOTOS}'s photos are found and framed by the runtime (YuNet, fer2013 framing), the highest-scoring "
             "face of each photo counted.", "",
             "| faces | n | accuracy keeping 100% | 90% | 70% | 50% | sure at the threshold | accuracy of sure faces |",
             "|---|---|---|---|---|---|---|---|"]
    for split, s in doc["sets"].items():
        acc = " | ".join("-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%" for r in s["risk_coverage"])
        sure = (f"{100 * s['accuracy_sure']:.2f}% ({100 * (s['accuracy_sure'] - s['accuracy_all']):+.2f} pp)"
                if s["accuracy_sure"] is not None else "no sure face")
        coverage = "-" if s["coverage"] is None else f"{s['coverage']:.1%}"  # no faces in the set
        lines.append(f"| {split} | {s['faces']} | {acc} | {coverage} | {sure} |")
    return lines


def replace_card_section(card: Path, lines: list[str], old_sha: str = "", new_sha: str = "") -> None:
    """The card's confidence section replaced (or put before its Limits), and a changed reference sha256 named
    anew in its opening line; the rest of the card stays as ship.py generated it."""
    if not card.is_file() or not lines:
        return
    text = card.read_text().split("\n")
    if SECTION in text:
        start = text.index(SECTION) - 1
        end = next((i for i in range(start + 2, len(text)) if text[i].startswith("## ")), len(text)) - 1
        text[start:end] = lines
    else:
        at = text.index("## Limits") - 1 if "## Limits" in text else len(text)
        text[at:at] = lines
    if old_sha and new_sha:
        text[:4] = [line.replace(f"`{old_sha[:16]}…`", f"`{new_sha[:16]}…`") for line in text[:4]]
    with atomic_output(card, force=True) as tmp:
        tmp.write_text("\n".join(text))


def run(out: Path, name: str, data: str, log=print) -> Path:
    """Stamp, measure, and write NAME_confidence.json; its path."""
    confidence = threshold_for(out, name, data)
    shas = stamp(out, name, confidence)
    log(f"{name}: threshold {confidence['threshold']} ({confidence['rule']}) in every shipped file")
    doc = measure(out, name, data, confidence)
    dst = out / f"{name}_confidence.json"
    with atomic_output(dst, force=True) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    replace_card_section(out / f"{name}_CARD.md", card_section(out, name), *shas)
    for split, s in doc["sets"].items():
        log(f"{name} on {split}: sure {s['coverage']:.1%} of {s['faces']} faces, accuracy of the sure ones "
            f"{s['accuracy_sure']}, of all {s['accuracy_all']}")
    return dst


@cli_main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fer_edge.training.confidence", description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="the shipped model's name (fer-vgg, fer-lite)")
    ap.add_argument("--data", help="the data folder (fer2013.npz and tfeid-dev/; required unless --card-only)")
    ap.add_argument("--out", type=Path, default=Path("models"), help="the folder the model is shipped in")
    ap.add_argument("--card-only", action="store_true", help="only rewrite the card's section from NAME_confidence.json")
    a = ap.parse_args(argv)
    if not (a.out / f"{a.name}.keras").is_file():
        raise FerEdgeError(f"{a.out / a.name}.keras: no such file: expected a model shipped by training/ship.py")
    if a.card_only:
        replace_card_section(a.out / f"{a.name}_CARD.md", card_section(a.out, a.name))
        return 0
    if not a.data:
        raise FerEdgeError("--data is required (FER2013 PublicTest and PrivateTest, and tfeid-dev/)")
    print(run(a.out, a.name, a.data, log=lambda m: print(m, file=sys.stderr)))
    return 0


if __name__ == "__main__":  # as its console script runs: stops, exit codes (fer_edge/launch.py)
    from fer_edge.launch import main_module

    main_module(main)
