"""fer-bench's record of where it ran (CPU, cores, load, versions), its INT8-vs-fp32 findings, and its
Markdown report (BENCHMARKS.md)."""
from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from pathlib import Path

from fer_edge.convert.cost import fmt_macs
from fer_edge.runtime.core.fileio import atomic_output

FP32_OF = {"tflite-int8": "tflite-fp32", "onnx-int8": "onnx-fp32"}
KERNEL_NAMES = {"default": "XNNPACK (default)", "builtin": "built-in", "cpu": "CPU EP", "keras": "model.predict"}
# distribution names: the first one installed is reported (tensorflow-cpu on x86_64, tensorflow elsewhere)
PACKAGES = {"numpy": ("numpy",), "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
            "ai-edge-litert": ("ai-edge-litert",), "tflite-runtime": ("tflite-runtime",),
            "onnxruntime": ("onnxruntime", "onnxruntime-gpu"), "tensorflow": ("tensorflow-cpu", "tensorflow"),
            "keras": ("keras",), "fer-edge": ("fer-edge",)}


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86: 'model name'; ARM boards: 'Model' or 'Hardware')."""
    found = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("model name", "Model", "Hardware", "CPU part") and value and key not in found:
                    found[key] = value
    except OSError:
        pass
    return found.get("model name") or found.get("Model") or found.get("Hardware") or platform.processor() \
        or platform.machine()


# CPU features that decide the INT8/fp32 balance: x86 vector width and int8 dot products (VNNI, AMX),
# ARM int8 dot products (asimddp, "dotprod") and i8mm
SIMD = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve")


def simd_flags() -> list[str]:
    """The features of SIMD this CPU reports in /proc/cpuinfo (x86 'flags', ARM 'Features')."""
    found = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    found.update(value.split())
    except OSError:
        pass
    return [s for s in SIMD if s in found]


def machine() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu": cpu_model(), "simd": simd_flags(), "cores": os.cpu_count(), "usable_cores": usable,
            "arch": platform.machine(),
            "platform": platform.platform(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name, dists in PACKAGES.items():
        for d in dists:
            try:
                out[name] = metadata.version(d)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def _label(row: dict) -> str:
    return row["name"] if row["kernels"] in ("default", "cpu", "keras") else f"{row['name']} ({KERNEL_NAMES[row['kernels']]} kernels)"


def int8_findings(doc: dict) -> list[dict]:
    """Every measured configuration of every INT8 row against the fp32 file of the same runtime."""
    rows = doc["rows"]
    out = []
    for r in rows:
        fp32_format = FP32_OF.get(r["format"])
        fp32 = next((x for x in rows if x["format"] == fp32_format and x["kernels"] in ("default", "cpu")), None)
        if fp32 is None:
            continue
        for key, v in r.get("latency", {}).items():
            f = fp32["latency"].get(key)
            if f:
                t, b = key[1:].split("_b")
                out.append({"int8": _label(r), "fp32": _label(fp32), "what": f"latency p50, {t} thread{'s' if t != '1' else ''}, batch {b}",
                            "int8_value": v["p50_ms"], "fp32_value": f["p50_ms"], "unit": "ms/face",
                            "slower": v["p50_ms"] > f["p50_ms"]})
        for det, v in r.get("e2e", {}).items():
            f = fp32.get("e2e", {}).get(det)
            if f:
                out.append({"int8": _label(r), "fp32": _label(fp32), "what": f"end-to-end frames/s, {det}",
                            "int8_value": v["fps"], "fp32_value": f["fps"], "unit": "frames/s",
                            "slower": v["fps"] < f["fps"]})
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _fmt(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _took(doc: dict) -> str:
    export = doc.get("export_seconds")
    if export:
        return (f"Took {doc['seconds'] + export:.0f} s: {export:.0f} s exporting the missing formats, "
                f"{doc['seconds']:.0f} s measuring.")
    return f"Took {doc['seconds']:.0f} s."


def headline(doc: dict) -> list[str]:
    """The figures a reader looks for first: INT8 per-face latency at 1 thread, end-to-end ratio to the tutorials."""
    lines = []
    int8 = next((r for r in doc["rows"] if r["format"] == "tflite-int8" and r["kernels"] == "default"), None)
    lat = (int8 or {}).get("latency", {}).get("t1_b1")
    if lat:
        verdict = "within" if lat["p50_ms"] <= 1.0 else "over"
        lines.append(f"- INT8 .tflite (`{int8['name']}`, XNNPACK) per-face latency at 1 thread, batch 1: "
                     f"p50 {_fmt(lat['p50_ms'])} ms, p95 {_fmt(lat['p95_ms'])} ms ({verdict} the 1 ms target).")
    base = doc.get("baseline")
    if int8 and base and int8.get("e2e"):
        parts = [f"{det} {v['fps']:.1f} frames/s = {v['fps'] / base['fps']:.1f}x" for det, v in int8["e2e"].items()]
        lines.append(f"- End to end at 1 thread, `{int8['name']}` in fer-edge against the tutorials' loop "
                     f"({base['fps']:.1f} frames/s): " + ", ".join(parts) + ".")
    if doc.get("baseline_note"):
        lines.append(f"- {doc['baseline_note'][0].upper()}{doc['baseline_note'][1:]}.")
    return lines


def _md_header(doc: dict) -> list[str]:
    """Title, machine, versions, what accuracy is measured against, the command and the headline."""
    m, v = doc["machine"], doc["versions"]
    L = ["# fer-edge benchmarks", ""]
    if doc.get("note"):
        L += [f"> **{doc['note']}**", ""]
    load = m.get("load_average_at_start")
    L += [f"Machine: **{m['cpu']}**, {m['cores']} cores ({m['usable_cores']} usable), {m['arch']}, {m['platform']}"
          + (f"; SIMD: {', '.join(m['simd']) or 'none of ' + ', '.join(SIMD)}" if "simd" in m else "")
          + (f"; load average {load[0]} / {load[1]} / {load[2]} when the run started" if load else "") + ".", "",
          "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", ""]
    ref = doc.get("reference")
    if ref:
        what = {"golden": f"the golden outputs `{Path(ref.get('path', '')).name}` (fp32 `{ref.get('model', '')}`, "
                          f"sha256 {ref.get('sha256', '')[:16]})",
                "keras": f"the Keras reference `{Path(ref.get('path', '')).name}`"}.get(ref["kind"])
        L += [f"Accuracy on FER2013 {ref['split']} ({ref['n']} faces)"
              + (f"; agreement = share of faces with the same top-1 class as {what}" if what else
                 "; no reference given, so no agreement") + ".", ""]
    else:
        L += ["No FER2013 data given (--data): accuracy and agreement not measured.", ""]
    L += ["Command (run in the repository root; rerun it whenever the shipped models change):", "", "```",
          doc.get("command", ""), "```", "", _took(doc), ""]
    head = headline(doc)
    if head:
        L += ["## Headline", ""] + head + [""]
    return L


def _md_latency(doc: dict) -> list[str]:
    """The table of accuracy and per-face latency, one row per file and kernel path."""
    s = doc["settings"]
    keys = [f"t{t}_b{b}" for t in s["threads"] for b in s["batches"]]
    L = ["## Accuracy and per-face latency", "",
         f"Latency in ms per face, p50 / p95: one call of the interpreter (int8 quantization of inputs and "
         f"outputs included, preprocessing excluded) divided by the batch size; median over {s['rounds']} rounds of "
         f"{s['iters']} calls after {s['warmup']} warm-up calls (Keras: {s['keras_iters']} calls of `model.predict` "
         "per round, the tutorials' call).", "",
         "| file | format | kernels | size | multiply-adds | parameters | accuracy | agreement | "
         + " | ".join(f"{k[1:].split('_b')[0]} thr, batch {k.split('_b')[1]}" for k in keys) + " |",
         "|---" * (8 + len(keys)) + "|"]
    for r in doc["rows"]:
        lat = r.get("latency", {})
        L.append(f"| `{r['name']}` | {r['format']} | {KERNEL_NAMES.get(r['kernels'], r['kernels'])} | {_size(r['bytes'])} | "
                 f"{fmt_macs(r.get('macs'))} | {format(r['parameters'], ',') if r.get('parameters') else '-'} | "
                 f"{_pct(r.get('accuracy'))} | {_pct(r.get('agreement'))} | "
                 + " | ".join(f"{_fmt(lat[k]['p50_ms'])} / {_fmt(lat[k]['p95_ms'])}" if k in lat else "-" for k in keys)
                 + " |")
    notes = [f"- `{r['name']}`: {r['classes']} ({r['faces']} faces)" for r in doc["rows"] if r.get("classes")]
    return L + (["", "Models whose classes differ from the data's are scored on the classes they share:", *notes]
                if notes else [])


def _md_e2e(doc: dict) -> list[str]:
    """The end-to-end table (frames/s of fer-edge per detector, against the tutorials' loop); empty if not run."""
    s, base = doc["settings"], doc.get("baseline")
    e2e_rows = [r for r in doc["rows"] if r.get("e2e")]
    if not e2e_rows:
        return []
    dets = list(e2e_rows[0]["e2e"])
    frames = e2e_rows[0]["e2e"][dets[0]]["frames"]
    L = ["", f"## End to end on `{Path(s['video']).name}` ({frames} frames, 1 thread)", "",
         f"Frames/s of one `fer-edge --source VIDEO --threads 1 --detector D` process (detector on every frame), "
         f"median of {s['e2e_repeats']} runs, and its detect / classify ms per frame. The last columns divide "
         "by the tutorials' loop: Haar (scale 1.3) on every frame and Keras `model.predict` per face, one thread.",
         "", "| file | kernels | " + " | ".join(f"{d} frames/s | {d} detect / classify ms" for d in dets)
         + (" | " + " | ".join(f"{d} vs tutorial" for d in dets) if base else "") + " |",
         "|---" * (2 + 2 * len(dets) + (len(dets) if base else 0)) + "|"]
    for r in e2e_rows:
        cells = []
        for d in dets:
            e = r["e2e"][d]
            cells += [f"{e['fps']:.1f}", f"{_fmt(e['stage_ms']['detect'])} / {_fmt(e['stage_ms']['classify'])}"]
        if base:
            cells += [f"{r['e2e'][d]['fps'] / base['fps']:.1f}x" for d in dets]
        L.append(f"| `{r['name']}` | {KERNEL_NAMES.get(r['kernels'], r['kernels'])} | " + " | ".join(cells) + " |")
    if base:
        L.append(f"| tutorials' loop: `{base['model'].split(' ')[0]}` | model.predict | {base['fps']:.1f} (haar 1.3) | "
                 f"{_fmt(base['stage_ms']['detect'])} / {_fmt(base['stage_ms']['classify'])} per face |"
                 + " |" * (2 * len(dets) - 2 + len(dets)))
    return L


def _md_int8_vs_fp32(doc: dict) -> list[str]:
    """Where INT8 was slower than fp32 on this machine, and the note on ARM boards."""
    L = ["", "## INT8 against fp32 on this machine", ""]
    found = doc.get("findings") or []
    slower = [f for f in found if f["slower"]]
    if not found:
        L.append("No INT8 file with an fp32 file of the same runtime was measured.")
    elif slower:
        L.append("INT8 is **slower** than fp32 here in these configurations:")
        L.append("")
        L += [f"- `{f['int8']}`: {f['what']}: {_fmt(f['int8_value'])} against {_fmt(f['fp32_value'])} {f['unit']} "
              f"for `{f['fp32']}`" for f in slower]
        L.append("")
        L.append(f"INT8 was faster or equal in the other {len(found) - len(slower)} of {len(found)} comparisons.")
    else:
        L.append(f"INT8 was not slower than fp32 in any of the {len(found)} configurations measured here.")
    L += ["", "On ARM boards (Raspberry Pi, Jetson) the balance can differ: CI proves accuracy and agreement on "
          "emulated aarch64 but takes no timings there; measure on the board itself with `fer-edge verify` and "
          "`fer-bench --quick` ([deploy/BOARDS.md](deploy/BOARDS.md)).", ""]
    return L


def _md_files(doc: dict) -> list[str]:
    L, seen = ["## Files", "", "| file | sha256 |", "|---|---|"], set()
    for r in doc["rows"]:
        if r["file"] not in seen:
            seen.add(r["file"])
            where = (f"`{r['name']}`, exported from `{r['exported_from']}` by --export-missing (not kept)"
                     if r.get("exported_from") else f"`{r['file']}`")
            L.append(f"| {where} | `{r['sha256'][:16]}` |")
    return L


def markdown(doc: dict) -> str:
    """The benchmark's Markdown page: header, latency table, end to end, INT8 against fp32, files."""
    L = _md_header(doc) + _md_latency(doc) + _md_e2e(doc) + _md_int8_vs_fp32(doc) + _md_files(doc)
    return "\n".join(L) + "\n"


OWN_SECTIONS = ("## Headline", "## Accuracy and per-face latency", "## End to end on", "## INT8 against fp32",
                "## Files")  # the headings markdown() writes; any other section of the file belongs to another tool


def with_other_sections(text: str, path: str | os.PathLike) -> str:
    """`text` followed by the sections of the existing file at `path` that fer-bench did not write (those that
    benchmarks/bench_runtime.py and the detector study added), in their order."""
    try:
        old = Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return text
    sections = re.split(r"(?m)^(?=## )", old)[1:]
    kept = [sec.rstrip("\n") + "\n" for sec in sections if not sec.startswith(OWN_SECTIONS)]
    return text.rstrip("\n") + "\n\n" + "\n".join(kept) if kept else text


def write_text(path: str | os.PathLike, text: str, force: bool = True) -> None:
    with atomic_output(path, force=force) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
