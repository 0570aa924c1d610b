"""The device packages never import the training stack: a Raspberry Pi has no TensorFlow.

Walks whatever modules runtime/ and calibration/ hold now (new ones are picked up without editing this
test), imports each in a fresh interpreter, and names the first module that pulled a heavy one in.
"""
from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorflow", "keras", "torch")

PROBE = r"""
import importlib, json, pkgutil, sys
heavy = set(sys.argv[1].split(","))
loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] in heavy)
found, culprits, failed = [], {}, {}
for pkg_name in ("fer_edge.runtime", "fer_edge.calibration"):
    before = set(loaded())
    pkg = importlib.import_module(pkg_name)
    found.append(pkg_name)
    if set(loaded()) - before:
        culprits[pkg_name] = sorted(set(loaded()) - before)[:5]
    names = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg_name + ".",
                                                  onerror=lambda name: failed.setdefault(name, "walk failed"))]
    for name in names:
        if name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing a __main__ module would run the command line
        before = set(loaded())
        try:
            importlib.import_module(name)
        except Exception as exc:  # report every broken module, not just the first
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        found.append(name)
        new = sorted(set(loaded()) - before)
        if new:
            culprits[name] = new[:5]
print(json.dumps({"modules": found, "heavy": loaded(), "culprits": culprits, "failed": failed}))
"""


def test_runtime_and_calibration_import_no_training_stack():
    proc = subprocess.run([sys.executable, "-c", PROBE, ",".join(HEAVY)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not report["failed"], f"modules that do not import: {report['failed']}"
    # The walk must have seen the foundation (so the test cannot pass by finding nothing).
    for name in ("core.errors", "model.labels", "model.preprocess", "model.metadata", "data.datasets", "core.fileio",
                 "data.metrics", "model.backends"):
        assert f"fer_edge.runtime.{name}" in report["modules"], report["modules"]
    assert "fer_edge.calibration" in report["modules"]
    assert report["heavy"] == [], f"imported {report['heavy']}; first pulled in by {report['culprits']}"
