"""No import cycles: between the project's modules, or between its packages (runtime, calibration, convert,
training). Every import counts, including those inside functions, which hide a cycle from Python but not
from a reader: the layers go runtime <- calibration <- convert <- training, never back. Inside the runtime the
rooms (its sub-packages) hold layers of their own, written as data below (LAYERS), and no module uses a
`_private` name of another. (No TensorFlow, Keras or PyTorch in the runtime: tests/test_imports.py.)"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"runtime": "fer_edge.runtime", "calibration": "fer_edge.calibration", "convert": "fer_edge.convert",
            "training": "fer_edge.training"}


def module_files() -> dict[str, Path]:
    """Dotted module name -> its file, for every module of the four packages."""
    modules = {}
    for folder, pkg in PACKAGES.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            if "_package" in f.parts:  # the fer_edge package itself, mapped from runtime/_package
                continue
            parts = f.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((pkg, *parts))
            modules[name.removesuffix(".__init__")] = f
    return modules


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
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


# ---- the runtime's rooms (issue 36): each sub-package of runtime/ is a room on one layer, low to high; a module
# imports only from its own room or a lower layer (rooms on one layer do not import each other). The modules
# directly in runtime/ (the command line: cli, its arguments, its config files, serve-api's) are the top layer.
LAYERS = [("core",), ("model",), ("data", "faces"), ("media",), ("recognize",), ("serve",), ("cli",)]
TOP_MODULES = {"cli", "cli_args", "cli_serve", "config"}  # runtime/*.py besides __init__.py: the "cli" layer
ROOM_SIZE = range(3, 11)  # 3-10 modules a room: a folder that says what it holds


def room(module: str) -> str | None:
    """The room of a fer_edge.runtime module ("cli" for runtime/ itself), None outside the runtime."""
    parts = module.split(".")
    if parts[:2] != ["fer_edge", "runtime"]:
        return None
    return parts[2] if len(parts) > 3 else "cli"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    rank = {r: i for i, rooms in enumerate(LAYERS) for r in rooms}
    bad = []
    for m, targets in sorted(graph.items()):
        if room(m) is None:
            continue
        for t in sorted(targets):
            if room(t) is None:
                bad.append(f"{m} imports {t}, outside the runtime")
            elif room(t) != room(m) and rank[room(t)] >= rank[room(m)]:
                bad.append(f"{m} ({room(m)}) imports {t} ({room(t)}): not a lower room")
    return bad


def private_imports(name: str, source: str, modules) -> list[str]:
    """`from other import _name`, `import other._name` and `other._name` (after `from pkg import other`) in
    one module: a name its own module keeps private, used from another."""
    private = lambda n: n.startswith("_") and not n.startswith("__")  # noqa: E731
    found, aliases = [], {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("fer_edge"):
            for a in node.names:
                if f"{node.module}.{a.name}" in modules:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                elif private(a.name) and node.module != name:
                    found.append(f"{name} imports {a.name} from {node.module}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("fer_edge") and any(private(p) for p in a.name.split(".")):
                    found.append(f"{name} imports {a.name}")
                if a.asname and a.name in modules:
                    aliases[a.asname] = a.name
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and private(node.attr) and aliases[node.value.id] != name):
            found.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    return found


def all_private_imports() -> list[str]:
    files = module_files()
    return [p for name, f in files.items() for p in private_imports(name, f.read_text(), files)]


def test_the_layer_walk_catches_a_lower_room_importing_a_higher_one():
    """The mutation: core importing the pipeline, or faces importing data (one layer), fails the test."""
    graph = import_graph()
    for low, high in [("fer_edge.runtime.core.errors", "fer_edge.runtime.recognize.pipeline"),
                      ("fer_edge.runtime.faces.motion", "fer_edge.runtime.data.golden"),
                      ("fer_edge.runtime.serve.api", "fer_edge.runtime.cli_args")]:
        planted = {**graph, low: graph[low] | {high}}
        assert f"{low} ({room(low)}) imports {high} ({room(high)}): not a lower room" in layer_violations(planted)
    src = ("from fer_edge.runtime.core.fileio import _hidden\nfrom fer_edge.runtime.core import fileio\n"
           "def f():\n    return fileio._hidden\n")
    assert private_imports("fer_edge.runtime.serve.x", src, module_files()) == [
        "fer_edge.runtime.serve.x imports _hidden from fer_edge.runtime.core.fileio",
        "fer_edge.runtime.serve.x uses fer_edge.runtime.core.fileio._hidden"]


def test_each_runtime_room_imports_only_its_own_or_lower_rooms():
    assert layer_violations(import_graph()) == []


def test_no_module_uses_another_modules_private_name():
    assert all_private_imports() == []


def test_the_runtime_folder_is_its_rooms_and_a_few_top_modules():
    runtime = ROOT / "runtime"
    rooms = {d.name for d in runtime.iterdir() if (d / "__init__.py").is_file() and d.name != "_package"}
    assert rooms == {r for layer in LAYERS for r in layer} - {"cli"}, "a new room needs its place in LAYERS"
    assert {f.stem for f in runtime.glob("*.py")} - {"__init__"} <= TOP_MODULES
    for r in sorted(rooms):
        modules = [f for f in (runtime / r).glob("*.py") if f.name != "__init__.py"]
        assert len(modules) in ROOM_SIZE, f"runtime/{r}/ holds {len(modules)} modules: 3-10 keep it readable"
        doc = ast.get_docstring(ast.parse((runtime / r / "__init__.py").read_text())) or ""
        assert len(doc.split()) >= 8, f"runtime/{r}/__init__.py: say in its docstring what the room owns"


def test_the_changelog_lists_every_runtime_module_at_its_new_path():
    """CHANGELOG.md's old -> new table (issue 36): the 31 modules that moved into rooms, each new path a module
    here (a module added later has no old path to list)."""
    import re

    rows = re.findall(r"^\| `fer_edge\.runtime\.(\w+)` \| `fer_edge\.runtime\.(\w+)\.(\w+)` \|$",
                      (ROOT / "CHANGELOG.md").read_text(), re.M)
    files = module_files()
    assert len({old for old, _, _ in rows}) == len(rows) == 31, rows
    assert all(f"fer_edge.runtime.{r}.{m}" in files and old == m for old, r, m in rows), rows
