"""No import cycles: between the project's modules, or between its packages (runtime, calibration, convert,
training). Every import counts, including those inside functions, which hide a cycle from Python but not
from a reader: the layers go runtime <- calibration <- convert <- training, never back."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"runtime": "fer_edge.runtime", "calibration": "fer_edge.calibration", "convert": "fer_edge.convert",
            "training": "fer_edge.training"}


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for folder, pkg in PACKAGES.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            if "_package" in f.parts:  # the fer_edge package itself, mapped from runtime/_package
                continue
            parts = f.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((pkg, *parts))
            modules[name.removesuffix(".__init__")] = f
    graph = {m: set() for m in modules}
    for name, f in modules.items():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for t in sorted(graph[n]):
            if state.get(t) == "open":
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    pkg = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    out = {p: set() for p in PACKAGES.values()}
    for m, targets in graph.items():
        out[pkg(m)] |= {pkg(t) for t in targets if pkg(t) != pkg(m)}
    return out


def test_the_walker_sees_imports_and_finds_a_planted_cycle():
    graph = import_graph()
    assert "fer_edge.runtime.model.backends" in graph["fer_edge.runtime.recognize.pipeline"]  # a top-level import
    assert "fer_edge.convert.source" in graph["fer_edge.training.evaluate"]  # one inside a function
    planted = {**graph, "fer_edge.runtime.core.errors": graph["fer_edge.runtime.core.errors"] | {"fer_edge.runtime.recognize.pipeline"}}
    assert cycles(planted)


def test_no_module_imports_itself_back():
    assert cycles(import_graph()) == []


def test_no_package_imports_back_up_the_layers():
    assert cycles(package_graph(import_graph())) == []
