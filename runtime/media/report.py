"""--report FILE.html: one self-contained page about a run, written when it ends.

The summary, each track's emotion timeline and the share of each emotion (inline SVG drawn here: no script,
no font, no image fetched, so it opens offline and renders with scripts off), the tracks table (and visits,
where the run has them), one row per photo with a face for a folder, the model with its figures, and the
command that produced it. Every string that reaches the page (file names, labels, the command) is escaped.

`ReportSink` collects during the run, in bounded memory (a timeline's points average more frames each time
they fill up, `Timeline`); `write_report` turns it and the summary into the page.
"""
from __future__ import annotations

import html
import re
import time
from pathlib import Path

from fer_edge.runtime.core.fileio import OutputFile
from fer_edge.runtime.core.redact import redact, redact_doc
from fer_edge.runtime.core.results import FrameResult
from fer_edge.runtime.media.drawing import LABEL_COLOURS
from fer_edge.runtime.media.sinks import TIMELINE_POINTS, Sink, Timeline  # noqa: F401 (TIMELINE_POINTS: the report keeps as many)

MAX_TIMELINES = 60  # tracks drawn; every track is in the table
MAX_ROWS = 20000  # rows of the photos and visits tables (a folder's photos with a face, visits)
W, H, LEFT, TOP = 900, 150, 44, 10  # timeline size and margins, in pixels


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def rgb(i: int) -> str:
    b, g, r = LABEL_COLOURS[i % len(LABEL_COLOURS)]  # the --timeline PNG's colours (BGR there)
    return f"rgb({r},{g},{b})"


class ReportSink(Sink):
    """What the report needs from each frame: the tracks' probabilities over time (streams and videos) or the
    photos' faces (folders). Written by `write_report` once the summary exists."""

    def __init__(self, labels: tuple[str, ...]):
        self.labels = labels
        self.timelines: dict[int, Timeline] = {}
        self.left_out: set[int] = set()  # tracks beyond MAX_TIMELINES (in the table, not drawn)
        self.photos: list[tuple[str, list]] = []
        self.photos_left_out = 0
        self.visits: list[dict] = []  # the `end` event of every visit (runtime.faces.visits)

    def write(self, frame, result: FrameResult):
        self.write_visits(result.visits)
        if result.source and getattr(frame, "name", ""):  # a photo of a folder: its row
            if result.faces:
                if len(self.photos) < MAX_ROWS:
                    self.photos.append((result.source, [(f.label, max(f.probs.values()), f.box) for f in result.faces]))
                else:
                    self.photos_left_out += 1
            return
        for f in result.faces:
            timeline = self.timelines.get(f.track)
            if timeline is None:
                if len(self.timelines) >= MAX_TIMELINES:
                    self.left_out.add(f.track)
                    continue
                timeline = self.timelines[f.track] = Timeline()
            timeline.add(result.time, [f.probs[k] for k in self.labels], float(getattr(f, "sure", True)))

    def write_visits(self, events: list[dict]) -> None:
        """Visit events of a frame, or (from the pipeline) those of a live source's visits open when it stopped."""
        self.visits += [e for e in events if e.get("event") == "end"][:MAX_ROWS - len(self.visits)]

    def finish(self, commit: bool) -> None:
        pass  # the page is written by write_report, once the run's summary exists


# -- charts -----------------------------------------------------------------------------------------------------

def share_svg(share: dict[str, float], labels: tuple[str, ...]) -> str:
    """One horizontal bar per emotion: its share of all faces seen."""
    row, bar_w, left = 22, 500, 90
    parts = [f'<svg class="share" width="{left + bar_w + 70}" height="{row * len(labels) + 4}" role="img" '
             'aria-label="share of each emotion">']
    for i, label in enumerate(labels):
        v = float(share.get(label, 0.0))
        y = 2 + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{esc(label)}</text>'
                     f'<rect class="bar" data-label="{esc(label)}" x="{left}" y="{y + 3}" width="{v * bar_w:.1f}" '
                     f'height="{row - 6}" fill="{rgb(i)}"><title>{esc(label)}: {v:.1%}</title></rect>'
                     f'<text x="{left + v * bar_w + 6:.1f}" y="{y + 15}">{v:.1%}</text>')
    return "".join(parts) + "</svg>"


def timeline_svg(track: int, points: list[list], labels: tuple[str, ...], t_end: float) -> str:
    """Each label's probability (0-1, up) over the run's time (seconds, right); unsure stretches shaded."""
    pw, ph = W - LEFT - 10, H - TOP - 22
    x = lambda t: LEFT + pw * t / t_end  # noqa: E731 - two one-line scales read better than two defs
    y = lambda p: TOP + ph * (1 - p)  # noqa: E731
    parts = [f'<svg class="timeline" data-track="{track}" width="{W}" height="{H}" role="img" '
             f'aria-label="track {track}: emotion probabilities over time">',
             f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>']
    parts += [f'<rect class="unsure" x="{x(a):.1f}" y="{TOP}" width="{x(b) - x(a) + 0.8:.1f}" height="{ph}" fill="#eee"/>'
              for p, (a, b) in zip(points, spans(points)) if p[2] < 0.5]
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    for i, label in enumerate(labels):
        pts = " ".join(f"{x(p[0]):.1f},{y(p[1][i]):.1f}" for p in points)
        parts.append(f'<polyline data-label="{esc(label)}" points="{pts}" fill="none" stroke="{rgb(i)}" '
                     f'stroke-width="1.6"><title>{esc(label)}</title></polyline>')
    parts.append(f'<text x="{LEFT}" y="{H - 5}">0 s</text>'
                 f'<text x="{LEFT + pw}" y="{H - 5}" text-anchor="end">{t_end:.1f} s</text>')
    return "".join(parts) + "</svg>"


def spans(points: list[list]) -> list[tuple[float, float]]:
    """The stretch of time each point stands for: halfway to its neighbours, never more than half the track's
    usual spacing on either side (a gap where the face was lost is not shaded), and a track's own span only,
    not the run's."""
    times = [p[0] for p in points]
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    half = (gaps[len(gaps) // 2] / 2) if gaps else 0.02  # one frame of a 25 fps source, for a one-point track
    out = []
    for i, t in enumerate(times):
        before = min(half, (t - times[i - 1]) / 2) if i else half
        after = min(half, (times[i + 1] - t) / 2) if i + 1 < len(times) else half
        out.append((max(0.0, t - before), t + after))
    return out


def legend(labels: tuple[str, ...]) -> str:
    return '<p class="legend">' + " ".join(f'<span style="color:{rgb(i)}">&#9632;</span> {esc(label)}'
                                           for i, label in enumerate(labels)) + "</p>"


# -- tables -----------------------------------------------------------------------------------------------------

def table(head: list[str] | None, rows: list[list], cls: str = "") -> str:
    """An HTML table (no header row for head=None); every cell escaped."""
    row_cls = f' class="{esc(cls)}"' if cls else ""
    return ("<table>" + ("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>" if head else "")
            + "".join(f"<tr{row_cls}>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


def summary_rows(s: dict) -> list[list]:
    rows = [["frames", s["frames"]], ["seconds", s["seconds"]], ["frames per second", s["fps"]],
            ["stopped by", s["stopped_by"]], ["faces", s["faces"]], ["frames with a face", s["frames_with_face"]]]
    rows += [[name, s[key]] for name, key in (("unsure faces", "unsure_faces"), ("visits", "visits")) if key in s]
    if s.get("in_view", {}).get("periods"):
        rows.append(["in view", f"{s['in_view']['seconds']:.1f} s ({s['in_view']['periods']} times)"])
    rows += [["corrupt frames skipped", s["corrupt_frames"]], ["reconnects", s["reconnects"]],
             ["per frame ms", ", ".join(f"{k} {v:.2f}" for k, v in s["stage_ms"].items())]]
    if s.get("unreadable"):
        rows.append(["unreadable files", ", ".join(s["unreadable"])])
    return rows


def tracks_table(tracks: list[dict]) -> str:
    """One row per track: frames, the dominant emotion of its sure frames and its share, its unsure frames."""
    unsure = any("unsure_frames" in t for t in tracks)
    rows = [[t["track"], t["frames"], t["dominant"] or "(no sure frame)", f"{t['share']:.0%}"]
            + ([t.get("unsure_frames", 0)] if unsure else []) for t in tracks]
    head = ["track", "frames", "dominant emotion", "share of its frames"] + (["unsure frames"] if unsure else [])
    return "<h2>Tracks</h2>" + table(head, rows, "track")


def visits_table(visits: list[dict]) -> str:
    """One row per visit that ended (runtime.faces.visits' `end` events)."""
    if not visits:
        return ""
    rows = [[v["track"], f"{v['start']:.2f}", f"{v['end']:.2f}", f"{v['seconds']:.2f}", v["frames"], v["sure_frames"],
             v["dominant"] or "(no sure frame)",
             f"{v['peak']['label']} {v['peak']['prob']:.0%} at {v['peak']['time']:.2f} s" if v.get("peak") else ""]
            for v in visits]
    head = ["track", "start (s)", "end (s)", "seconds", "frames", "sure frames", "dominant emotion", "peak"]
    return "<h2>Visits</h2>" + table(head, rows, "visit")


def figures_rows(figures: dict) -> list[list]:
    """The model's stored figures, one row per split: faces, accuracy, macro-F1, agreement with fp32."""
    rows = []
    for split, f in sorted(figures.items()):
        if isinstance(f, dict) and "accuracy" in f:
            rows.append([split, f.get("n", "")] + [_pct(f.get(k)) for k in ("accuracy", "macro_f1", "agreement",
                                                                           "reference_accuracy")])
    return rows


def _pct(v) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else ""


def card_figures(model: Path) -> list[list]:
    """The first table under '## Figures' of the model's card (models/NAME_CARD.md beside the file), as rows."""
    card = model.with_name(model.name.split("_")[0] + "_CARD.md")
    if not card.is_file():
        return []
    text = card.read_text(encoding="utf-8", errors="replace")
    part = re.split(r"^## Figures.*$", text, maxsplit=1, flags=re.M)
    if len(part) < 2:
        return []
    rows = []
    for line in part[1].splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            break
    return rows


def model_section(model: dict) -> str:
    path = Path(model["path"])
    out = ["<h2>Model</h2>", table(None, [["file", path.name], ["labels", model.get("label_set", "")],
                                              ["input", model.get("input", "")], ["made by", model.get("command", "")]])]
    rows = figures_rows(model.get("figures", {}))
    if rows:
        out += ["<h3>Figures stored in the model</h3>",
                table(["split", "faces", "accuracy", "macro-F1", "agreement with fp32", "fp32 accuracy"], rows)]
    card = card_figures(path)
    if card:
        out += [f"<h3>Figures from {esc(path.name.split('_')[0])}_CARD.md</h3>", table(card[0], card[1:])]
    return "".join(out)


# -- the page ---------------------------------------------------------------------------------------------------

STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222;max-width:960px}
table{border-collapse:collapse;margin:6px 0 14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}svg text{font:11px sans-serif;fill:#333}pre{background:#f5f5f5;padding:8px;white-space:pre-wrap}
.legend span{font-size:16px}"""


def timelines_section(sink: ReportSink, summary: dict) -> str:
    if sink.photos or not sink.timelines:
        return ""
    timelines = {track: timeline.all() for track, timeline in sorted(sink.timelines.items())}
    t_end = max((p[0] for points in timelines.values() for p in points), default=0.0) or 1.0
    out = ["<h2>Emotion timeline of each track</h2>", legend(sink.labels),
           '<p>Probabilities from 0 to 1 over the run; grey: the model was unsure.</p>']
    for track, points in timelines.items():
        out.append(f"<h3>Track {track}: {int(sum(p[3] for p in points))} frames</h3>")
        out.append(timeline_svg(track, points, sink.labels, t_end))
    if sink.left_out:
        out.append(f"<p>{len(sink.left_out)} more tracks are in the table, not drawn.</p>")
    return "".join(out)


def photos_section(sink: ReportSink) -> str:
    if not sink.photos:
        return ""
    rows = [[name, len(faces), "; ".join(f"{label} {p:.0%} at {list(box)}" for label, p, box in faces)]
            for name, faces in sink.photos]
    note = f"<p>{sink.photos_left_out} more photos with a face are left out.</p>" if sink.photos_left_out else ""
    return "<h2>Photos with a face</h2>" + table(["photo", "faces", "emotions"], rows, "photo") + note


def page(sink: ReportSink, summary: dict, model: dict, command: str, source: str) -> str:
    """The whole page; the source, the command and the model's own command are redacted (runtime/core/redact.py):
    a page may be mailed as it is."""
    source, command, model = redact(source), redact(command), redact_doc(model)
    tracks = summary.get("tracks", [])
    sure = " (of sure faces)" if "unsure_faces" in summary else ""
    body = [f"<h1>fer-edge report: {esc(source)}</h1>",
            f"<p>Written {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}.</p>",
            "<h2>Summary</h2>", table(None, summary_rows(summary)),
            f"<h2>Share of each emotion{sure}</h2>", share_svg(summary.get("emotion_share", {}), sink.labels),
            timelines_section(sink, summary), photos_section(sink), visits_table(sink.visits),
            tracks_table(tracks) if tracks and not sink.photos else "",
            model_section(model), "<h2>Command</h2>", f"<pre><code>{esc(command)}</code></pre>"]
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>fer-edge report: {esc(source)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(b for b in body if b) + "</body></html>\n")


def write_report(out: OutputFile, sink: ReportSink, summary: dict, model: dict, command: str, source: str) -> None:
    """The page to its temporary name, then renamed (the caller's OutputFile was checked before the run)."""
    text = page(sink, summary, model, command, source)
    if out.stdout:
        f = out.open("w")
        f.write(text)
        f.flush()
        return
    with open(out.target, "w", encoding="utf-8") as f:
        f.write(text)
    out.commit()
