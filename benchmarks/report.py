"""What every measurement script here ends with: its results as JSON and as a Markdown table beside it."""
from __future__ import annotations

import json
from pathlib import Path

from fer_edge.runtime.core.fileio import atomic_output


def write_report(out: str | Path, doc: dict, markdown: list[str] | None = None) -> None:
    """`doc` to `out` (JSON), `markdown` lines to the same name with .md, both atomically; print the table."""
    with atomic_output(out, force=True) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    if markdown:
        with atomic_output(Path(out).with_suffix(".md"), force=True) as tmp:
            tmp.write_text("\n".join(markdown) + "\n")
        print("\n".join(markdown))
