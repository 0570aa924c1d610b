"""Every shell command in README.md and docs/*.md keeps working: each line of a ```bash fence is run on the
sample data, or handled by one row of the explicit table below; a command that is neither fails, naming
its file, line and text, so a new page cannot document a command nothing checks.

How a command is handled (the first RULES row whose pattern matches decides; no row = run it):
- run    : run with bash in a scratch copy of the repository's layout (``models/``, ``benchmarks/``,
           ``examples/`` ... linked file by file, ``../shared/data`` pointing at $FER_EDGE_DATA), one per page and
           shared by its commands in order (as a reader runs them), after the SUBSTITUTIONS (hardware and
           placeholder paths -> the sample data) and with the FIXTURES (placeholder files the docs name, made
           from the samples) in place; it must exit 0, and with ``--json -`` print only JSON lines.
- parse  : too slow to run here (training for hours, a full conversion or benchmark): the command's own
           argument parser reads it (every flag exists, every value parses), nothing more is run.
- pip    : a ``pip install`` line: every extra it names exists in pyproject.toml and the target is this project.
- setup  : creating the virtualenv the test already runs in.
- ci     : run by CI itself: the same command is in .ci/run (checked).
- server : a server (``--serve``, ``serve-api``): started like a run, it must still be up after SERVER_UP_S
           seconds (or have ended with 0), then stop on SIGINT with exit 0 or 130.
- host   : a command of the board or its host (sudo, docker, systemctl, curl...): not run; the repository files
           it names must exist and a pip install in it must name real extras.
- unhandled: fails, saying so (any other pip command; any program not in RUNNABLE).
The pages: README.md, docs/*.md, deploy/**/*.md and BENCHMARKS.md.
Cost: about 1.5 minutes of CPU, 2-2.5 minutes of wall time on 2 shared cores (most of it fer-eval, fer-explain
and fer-convert verify); every run-command has a RUN_LIMIT_S (180 s) limit.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "deploy").rglob("*.md")),
        ROOT / "BENCHMARKS.md"]
# pages whose plain ``` fences hold commands: fer-bench and benchmarks/bench_runtime.py write the command that
# made the figures there
PLAIN_FENCE_PAGES = {"BENCHMARKS.md"}
BIN = Path(sys.executable).parent

SERVER_UP_S = 8
RUN_LIMIT_S = 180
# (pattern, kind, why). Searched in order against the command with its comment removed; the first match wins.
RULES: list[tuple[str, str, str]] = [
    (r"^systemd-analyze security --offline=true \S+\.service\b", "host", "tests/test_service.py runs it on the "
     "unit and fails above 1.5; here the unit it names must exist"),
    (r"^python3? -m venv \.venv$", "setup", "the virtualenv this test runs in"),
    (r"^((\S*/)?pip|python3? -m pip) install ", "pip", "installing is checked against pyproject.toml's extras, not run"),
    (r"^python3? -m pip download .* -d \.device/wheels ", "ci", "the device training wheels: .ci/run fetches them "
     "(the package index is there), so the pins stay real"),
    (r"^((\S*/)?pip|python3? -m pip) ", "unhandled", "pip is not run here (it needs the network): add a row"),
    (r"^(FER_EDGE_DATA=\S+ )?(\S*/)?python3? -m pytest\b", "ci", "the test suite: .ci/run runs it"),
    (r"^python3? -c \"?import (sys, )?torch\b", "torch", "a PyTorch line: run where torch is installed (the [torch] "
     "extra; .ci/torch.sh runs this test there), skipped elsewhere"),
    (r"^bash \.ci/run$", "ci", "CI itself"),
    (r"^fer-train\b(?!.*\s--limit\s)", "parse", "training takes hours (a run with --limit N is run); "
     "tests/test_training.py runs short ones"),
    (r"^python3? -m fer_edge\.training\.(ship|wise)\b", "parse",
     "a full conversion / WiSE-FT sweep on FER2013 (minutes to hours); tests/test_wise.py and the CI "
     "re-conversion run them"),
    (r"^fer-convert (?!verify\b)", "parse", "a full conversion takes minutes; CI's re-conversion gate runs "
     "fer-convert on every shipped reference, tests/test_convert.py on small models"),
    (r"^fer-edge\b.*\s(--serve|serve-api)\b", "server", "a server runs until stopped: it must start and stay up "
     f"{SERVER_UP_S} s, then stop cleanly on Ctrl-C (SIGINT)"),
    (r"^fer-bench\b", "parse", "a full benchmark takes minutes; tests/test_bench.py runs --quick"),
    (r"^python3? benchmarks/\S+\.py\b", "parse", "benchmarks take minutes; their results are in benchmarks/"),
]
# The pages of boards and servers (deploy/, docs/security.md) show commands of the board or its host: not run
# here (no root, Docker or systemd, no board to curl); check_host checks the files they name.
HOST_PAGES = ("deploy/", "docs/security.md")
HOST = r"(^|[|;]\s*)(sudo|sudoedit|docker|systemctl|journalctl|useradd|cd|curl)\b"
HOST_WHY = ("a command of the board or its host (root, Docker, systemd, curl to a board): not run here; every "
            "repository file it names must exist, and a pip install in it names real extras "
            "(tests/test_deploy_files.py checks the files' contents, tests/test_deploy_api.py the API's answers)")
RUNNABLE = {"fer-edge", "fer-convert", "fer-eval", "fer-explain", "fer-train", "python", "python3"}

# Placeholders and hardware in the docs -> what the test uses instead (regex on the command -> replacement).
SUBSTITUTIONS: list[tuple[str, str]] = [
    (r"--camera \d+", "--source video.mp4"),  # no camera here: the sample video
    (r"--picamera\b", "--source video.mp4"),  # no Raspberry Pi camera either
    (r"rtsp://\S+", "video.mp4"),  # no network stream
    (r"(?<![\w/.-])fer2013\.csv\b", "{data}/fer2013.npz"),  # the docs' generic data file: the npz copy
    (r"(?<![\w/.-])DATA\b", "{data}"),
    # the service's files: the shipped example config (its camera replaced by the video) and the page's token
    (r"--config /etc/fer-edge/config\.toml", "--config config.toml --source video.mp4"),
    (r"/etc/fer-edge/token\b", "token.txt"),
]
# Placeholder files the docs name, made in the scratch folder from the samples (path -> source).
FIXTURES: dict[str, str] = {
    "video.mp4": "{data}/samples/fer_test.mp4",
    "photo.jpg": "{data}/samples/fer_justin.jpg",
    "photos/": "{data}/samples/*.jpg",
    "runs/vgg/model.keras": "{root}/models/fer-vgg.keras",
    "export/model_int8.tflite": "{root}/models/fer-vgg_int8.tflite",
    "config.toml": "{root}/deploy/config.example.toml",
    "api.toml": "{root}/tests/assets/api.toml",
}
LINKED = ("models", "benchmarks", "deploy", "tests", ".ci", "examples")  # repository folders a command may name


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    text: str  # as written, continuation lines joined, comment kept (bash drops it)

    @property
    def bare(self) -> str:
        """Without the trailing comment, words re-joined by single spaces."""
        return " ".join(shlex.split(self.text, comments=True))

    @property
    def words(self) -> list[str]:
        """The words as the shell splits them (quotes kept inside words: `bare` re-joins them and loses that)."""
        return shlex.split(self.text, comments=True)

    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def extract(path: Path) -> list[Command]:
    """Each command of each ```bash fence: lines joined over trailing backslashes, `&&` chains split, blank
    and comment-only lines skipped, a leading `$ ` prompt removed. In a ```console fence only the `$ ` lines
    are commands (the others are what they print); on PLAIN_FENCE_PAGES a plain ``` fence holds commands."""
    out, in_fence, pending, start = [], False, "", 0
    plain = "```" if _shown(path) in PLAIN_FENCE_PAGES else None
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        s = raw.strip()
        if s.startswith("```"):
            in_fence = ("console" if s == "```console" else s in ("```bash", "```sh", "```shell", plain)) \
                if not in_fence else False
            continue
        if in_fence == "console" and not pending and not s.startswith("$ "):
            continue
        if not in_fence or (not pending and (not s or s.startswith("#"))):
            continue
        start = start if pending else n
        if s.endswith("\\"):
            pending += s[:-1].rstrip() + " "
            continue
        full, pending = (pending + s).removeprefix("$ "), ""
        for part in re.split(r"\s&&\s", full):
            out.append(Command(_shown(path), start, part.strip()))
    return out


def classify(bare: str, page: str = "") -> tuple[str, str]:
    if page.startswith(HOST_PAGES) and re.search(HOST, bare):
        return "host", HOST_WHY
    for pattern, kind, why in RULES:
        if re.search(pattern, bare):
            return kind, why
    program = re.sub(r"^(\S*/)?\.venv/bin/", "", bare).split(" ")[0]
    if program in RUNNABLE:
        return "run", ""
    return "unhandled", f"{program!r} is neither runnable here nor in tests/test_docs.py's RULES"


COMMANDS = [c for doc in DOCS for c in extract(doc)]
_SCRATCH: dict[str, Path] = {}  # page -> its scratch repository


# ---- the handlers ---------------------------------------------------------------------------------------

def check_pip(cmd: Command) -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    words = shlex.split(cmd.bare)
    targets = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    assert targets, f"{cmd.where()}\n  installs nothing"
    for t in targets:
        m = re.fullmatch(r"(fer-edge|\.)(?:\[([\w,-]+)\])?", t)
        assert m, f"{cmd.where()}\n  installs {t!r}: expected fer-edge or . with optional [extras]"
        missing = set((m.group(2) or "").split(",")) - extras - {""}
        assert not missing, f"{cmd.where()}\n  names extras {sorted(missing)} that pyproject.toml lacks"


def check_ci(cmd: Command) -> None:
    if cmd.bare == "bash .ci/run":
        assert (ROOT / ".ci" / "run").is_file()
        return
    core = re.sub(r"^(FER_EDGE_DATA=\S+ )?(\S*/)?", "", cmd.bare)  # python -m pytest -q
    ci = (ROOT / ".ci" / "run").read_text()
    assert core in ci, f"{cmd.where()}\n  is said to run in CI, but .ci/run has no {core!r}"


def check_host(cmd: Command) -> None:
    """Every repository file the command names exists, beside its page or from the checkout's root (a leading
    `fer-edge/` is the checkout); a pip install in it is checked as pip lines are."""
    page_dir = (ROOT / cmd.file).parent
    for word in cmd.words:
        word = word.split("=", 1)[-1] if re.match(r"-|\w+=", word) else word  # --opt=value, NAME=value
        if word.startswith(("/", "$", "-")) or ":" in word or "@" in word:  # host paths, URLs, images, ports
            continue
        if "/" in word or word.endswith((".sh", ".toml", ".service")) or word == "Dockerfile":
            rel = word.removeprefix("fer-edge/")
            assert (page_dir / word).exists() or (ROOT / rel).exists(), (
                f"{cmd.where()}\n  names {word!r}: no such file beside {cmd.file} or in the repository")
    if re.search(r"\bpip install ", cmd.bare):
        check_pip(Command(cmd.file, cmd.line, cmd.bare[cmd.bare.index("pip install"):]))


_PARSE_ONLY = r"""
import argparse, runpy, sys, tomllib
argv = sys.argv[1:]
original = argparse.ArgumentParser.parse_args
def parse_only(self, args=None, namespace=None):
    original(self, args, namespace)  # exits 2 with argparse's message on a bad flag or value
    raise SystemExit(0)
argparse.ArgumentParser.parse_args = parse_only
program, args = argv[0], argv[1:]
if program in ("python", "python3"):
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")
else:
    scripts = tomllib.load(open("pyproject.toml", "rb"))["project"]["scripts"]
    module, func = scripts[program].split(":")
    sys.argv = [program, *args]
    sys.exit(getattr(__import__(module, fromlist=[func]), func)(args))
raise SystemExit("the command ran to its end without parsing arguments")
"""


def check_parse(cmd: Command) -> None:
    words = cmd.words
    proc = subprocess.run([sys.executable, "-c", _PARSE_ONLY, *words], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, f"{cmd.where()}\n  its argument parser refuses it:\n{proc.stderr[-2000:]}"


def scratch_repo(tmp: Path, data: Path) -> Path:
    """tmp/repo holding links to the repository's folders (file by file, so what a command writes lands in
    tmp, never in the checkout) and tmp/shared/data -> $FER_EDGE_DATA (for ../shared/data)."""
    repo = tmp / "repo"
    for folder in LINKED:
        for f in (ROOT / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                (repo / f.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
                (repo / f.relative_to(ROOT)).symlink_to(f)
    (tmp / "shared").mkdir()
    (tmp / "shared" / "data").symlink_to(data.resolve())
    return repo


def make_fixtures(text: str, repo: Path, data: Path) -> None:
    for name, source in FIXTURES.items():
        if not re.search(rf"(?<![\w/.-]){re.escape(name.rstrip('/'))}(?![\w.-])", text):
            continue
        src = source.format(data=data, root=ROOT)
        dest = repo / name
        if name.endswith("/"):
            dest.mkdir(parents=True, exist_ok=True)
            for f in sorted(Path(src).parent.glob(Path(src).name)):
                shutil.copy(f, dest / f.name)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)


def runnable_text(cmd: Command, data: Path) -> str:
    text = re.sub(r"(^|\s)(\S*/)?\.venv/bin/", r"\1", cmd.text)
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement.format(data=data), text)
    return text


def _prepared(cmd: Command, repo: Path, data: Path) -> tuple[str, dict]:
    text = runnable_text(cmd, data)
    make_fixtures(text, repo, data)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "FER_EDGE_DATA": str(data),
           "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}
    return text, env


def check_server(cmd: Command, repo: Path, data: Path) -> None:
    text, env = _prepared(cmd, repo, data)
    proc = subprocess.Popen(["bash", "-c", f"exec {text}"], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=SERVER_UP_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"{cmd.where()}\n  ran as `{text}`: did not stop within 60 s of SIGINT")
    assert proc.returncode in (0, 130, -signal.SIGINT), (
        f"{cmd.where()}\n  ran as `{text}` in {repo}: exit {proc.returncode}\n{err[-3000:]}")


def check_run(cmd: Command, repo: Path, data: Path) -> None:
    text, env = _prepared(cmd, repo, data)
    try:
        proc = subprocess.run(["bash", "-c", text], cwd=repo, capture_output=True, text=True, timeout=RUN_LIMIT_S, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{cmd.where()}\n  ran as `{text}` and did not end within {RUN_LIMIT_S} s (a server or a camera loop "
                    f"needs a row in RULES or SUBSTITUTIONS)")
    assert proc.returncode == 0, (f"{cmd.where()}\n  ran as `{text}` in {repo}: exit {proc.returncode}\n"
                                  f"{proc.stderr[-3000:]}")
    if re.search(r"--json -(\s|$)", text):
        for i, line in enumerate(proc.stdout.splitlines(), 1):
            try:
                json.loads(line)
            except ValueError:
                pytest.fail(f"{cmd.where()}\n  --json - printed a line that is not JSON (stdout line {i}): {line!r}")


# ---- the tests ------------------------------------------------------------------------------------------

def test_the_docs_have_commands_and_the_extractor_reads_fences(tmp_path):
    assert sum(c.file == "README.md" for c in COMMANDS) >= 2, "README.md lost its two commands"
    page = tmp_path / "page.md"
    page.write_text("text\n```bash\n# a comment\nfer-edge --image a.jpg \\\n  --json -   # note\n\n"
                    "python3 -m venv .venv && .venv/bin/pip install -e .\n```\n```python\nprint(1)\n```\n")
    got = [(c.line, c.text) for c in extract(page)]
    assert got == [(4, "fer-edge --image a.jpg --json -   # note"), (7, "python3 -m venv .venv"),
                   (7, ".venv/bin/pip install -e .")]
    assert Command("x.md", 1, got[0][1]).bare == "fer-edge --image a.jpg --json -"
    page.write_text("```console\n$ fer-edge --image a.jpg\nfer-edge: 1 face\n```\n```\nfer-edge --x\n```\n")
    assert [(c.line, c.text) for c in extract(page)] == [(2, "fer-edge --image a.jpg")]
    assert [c.file for c in COMMANDS if c.file.startswith("deploy/")] and "BENCHMARKS.md" in {c.file for c in COMMANDS}


def test_unknown_programs_and_bad_extras_fail():
    assert classify("curl -s http://localhost:8080/")[0] == "unhandled"
    assert classify("docker run fer-edge")[0] == "unhandled"
    assert classify("fer-edge --source video.mp4")[0] == "run"
    assert classify(".venv/bin/pip install 'fer-edge[onnx]'")[0] == "pip"
    assert classify("python3 -m pip download -d wheels keras")[0] == "unhandled"
    assert classify("fer-train --data d --out o")[0] == "parse"
    assert classify("fer-train --data d --out o --limit 256 --epochs 1")[0] == "run"
    with pytest.raises(AssertionError, match="nosuchextra"):
        check_pip(Command("x.md", 1, "pip install 'fer-edge[onnx,nosuchextra]'"))
    with pytest.raises(AssertionError, match="refuses"):
        check_parse(Command("x.md", 1, "fer-train --data d --out o --no-such-flag"))
    assert classify("sudo systemctl enable --now fer-edge", "deploy/x.md")[0] == "host"
    assert classify("docker build -f x .", "deploy/docker/README.md")[0] == "host"
    assert classify("python3 -c 'print(1)' | sudo install -m 0640 /dev/stdin /etc/x", "deploy/x.md")[0] == "host"
    assert classify("sudo systemctl enable --now fer-edge", "docs/device.md")[0] == "unhandled"
    check_host(Command("deploy/systemd/README.md", 1, "sudo install -m 0644 fer-edge.service /etc/systemd/system/"))
    with pytest.raises(AssertionError, match="no-such.service"):
        check_host(Command("deploy/systemd/README.md", 1, "sudo install -m 0644 no-such.service /etc/systemd/"))
    with pytest.raises(AssertionError, match="nosuchextra"):
        check_host(Command("deploy/x.md", 1, "sudo /opt/v/bin/pip install 'fer-edge[nosuchextra]'"))


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.file}:{c.line}:{c.text[:40]}" for c in COMMANDS])
def test_documented_command(cmd: Command, tmp_path_factory, request):
    kind, why = classify(cmd.bare, cmd.file)
    if kind == "unhandled":
        pytest.fail(f"{cmd.where()}\n  {why}: run it on the sample data, or add a row (pattern, kind, why) to "
                    f"RULES / SUBSTITUTIONS in tests/test_docs.py")
    elif kind == "pip":
        check_pip(cmd)
    elif kind == "ci":
        check_ci(cmd)
    elif kind == "host":
        check_host(cmd)
    elif kind == "parse":
        check_parse(cmd)
    elif kind == "torch" and importlib.util.find_spec("torch") is None:
        pytest.skip("needs PyTorch (the [torch] extra): .ci/torch.sh runs tests/test_docs.py in its environment")
    elif kind in ("run", "server", "torch"):
        data = request.getfixturevalue("data_dir")
        if cmd.file not in _SCRATCH:  # one working folder per page, shared by its commands in order, as a reader's
            _SCRATCH[cmd.file] = scratch_repo(tmp_path_factory.mktemp("docs"), data)
        (check_server if kind == "server" else check_run)(cmd, _SCRATCH[cmd.file], data)
    else:
        assert kind == "setup"


def test_a_failing_run_or_server_names_the_page_line_and_command(tmp_path, data_dir):
    repo = scratch_repo(tmp_path, data_dir)
    with pytest.raises(AssertionError, match=r"page\.md:3: fer-edge --image nope\.jpg(.|\n)*exit 2"):
        check_run(Command("page.md", 3, "fer-edge --image nope.jpg --json -"), repo, data_dir)
    with pytest.raises(AssertionError, match=r"page\.md:4: (.|\n)*exit 2"):
        check_server(Command("page.md", 4, "fer-edge --image nope.jpg --serve 127.0.0.1:0"), repo, data_dir)
