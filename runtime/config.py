"""`--config FILE.toml`: the command-line options written as TOML keys; flags on the command line win.

    # /etc/fer-edge/config.toml
    camera = 0
    detector = "blazeface"
    detect_every = 3          # dashes or underscores: detect-every works too
    mqtt = "mqtt://broker.local:1883/fer/kitchen"
    serve = "0.0.0.0:8080"

The file is turned into command-line tokens placed before the real ones and parsed by the same
argparse parser, so a key takes exactly the values, types and choices of its flag, and a later flag
overrides it (argparse keeps the last value). Booleans: `true` gives the flag, `false` gives `--no-X`
where the flag has one and nothing otherwise. Where the file and the command line both name a member of
a mutually exclusive group (e.g. `source` in the file, `--camera 0` on the command line), the command
line's choice wins and the file's is dropped. Unknown keys are an error that names them and lists the
valid ones.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer_edge.runtime.core.errors import FerEdgeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser from PyPI (a conditional dependency in pyproject.toml)
    import tomli as tomllib

CONFIG_FLAG = "--config"


class ConfigError(FerEdgeError):
    """A config file that is missing, not TOML, or holds a key or value the command does not take."""


class ConfigurableParser(argparse.ArgumentParser):
    """An ArgumentParser that lists the options it was given, for --config: argparse keeps its own list (and its
    mutually exclusive groups) private. `add_argument` returns each option's Action, the public record of its
    flags, nargs, type and choices; every option added through the parser or its groups is kept here."""

    def __init__(self, *args, **kwargs):
        self.declared: list[argparse.Action] | None = None  # argparse's own set-up (--help, its groups) is not kept
        super().__init__(*args, **kwargs)
        self.declared = []  # every option, in the order added
        self.exclusive: list[list[argparse.Action]] = []  # the members of each mutually exclusive group

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if self.declared is not None:
            self.declared.append(action)
        return action

    def add_argument_group(self, *args, **kwargs):
        group = super().add_argument_group(*args, **kwargs)
        return group if self.declared is None else _Declaring(group, self)

    def add_mutually_exclusive_group(self, **kwargs):
        return _Declaring(super().add_mutually_exclusive_group(**kwargs), self, exclusive=True)


class _Declaring:
    """An argument group of a ConfigurableParser: what it adds is declared to the parser too."""

    def __init__(self, group, parser: ConfigurableParser, exclusive: bool = False):
        self.group, self.parser = group, parser
        self.members: list[argparse.Action] | None = [] if exclusive else None
        if exclusive:
            parser.exclusive.append(self.members)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = self.group.add_argument(*args, **kwargs)
        self.parser.declared.append(action)
        if self.members is not None:
            self.members.append(action)
        return action

    def add_mutually_exclusive_group(self, **kwargs):
        return _Declaring(self.group.add_mutually_exclusive_group(**kwargs), self.parser, exclusive=True)


def _long_options(parser: ConfigurableParser) -> dict[str, argparse.Action]:
    """'--detect-every' -> its action, for every long option but --help and --config."""
    out = {}
    for action in parser.declared:
        for opt in action.option_strings:
            negative = opt.startswith("--no-") and "--" + opt[5:] in action.option_strings  # --no-X of --X
            if opt.startswith("--") and opt not in ("--help", CONFIG_FLAG) and not negative:
                out[opt] = action
    return out


def _config_path(argv: list[str]) -> tuple[str | None, list[str]]:
    """The --config value (the last one wins, like any flag) and argv without it."""
    path, rest, i = None, [], 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            rest += argv[i:]
            break
        if tok == CONFIG_FLAG:
            if i + 1 >= len(argv):
                raise ConfigError(f"{CONFIG_FLAG} needs a file name")
            path, i = argv[i + 1], i + 2
            continue
        if tok.startswith(CONFIG_FLAG + "="):
            path = tok.split("=", 1)[1]
        else:
            rest.append(tok)
        i += 1
    return path, rest


def read_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): "
                          "TOML files are UTF-8; re-save it as UTF-8") from None


def config_tokens(config: dict, parser: ConfigurableParser, source: str = "config") -> list[tuple[str, list[str]]]:
    """[(option, tokens)] for each key of a parsed config file, checked against the parser's options."""
    options = _long_options(parser)
    out = []
    for key, value in config.items():
        opt = "--" + str(key).replace("_", "-")
        action = options.get(opt)
        if action is None:
            valid = ", ".join(sorted(o[2:] for o in options))
            raise ConfigError(f"{source}: unknown key {key!r}; valid keys: {valid}")
        if isinstance(value, dict):
            raise ConfigError(f"{source}: key {key!r} must be a value, found a table")
        if action.nargs == 0:  # a flag: store_true / store_false / BooleanOptionalAction
            if not isinstance(value, bool):
                raise ConfigError(f"{source}: key {key!r} takes true or false, found {value!r}")
            negative = "--no-" + opt[2:]
            if isinstance(action, argparse.BooleanOptionalAction):
                out.append((opt, [opt if value else negative]))
            elif value == bool(action.const):  # store_true: true gives the flag; false is its default
                out.append((opt, [opt]))
            continue
        if action.nargs == "?" and isinstance(value, bool):  # an optional value (--ha-discovery [PREFIX]): true
            if value:                                         # gives the flag and its default, false leaves it off
                out.append((opt, [opt]))
            continue
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and action.nargs in (None, "?"):
            raise ConfigError(f"{source}: key {key!r} takes one value, found a list")
        tokens = []
        for v in values:
            if isinstance(v, bool):
                raise ConfigError(f"{source}: key {key!r} takes a value, not {str(v).lower()}")
            if isinstance(v, (dict, list)):
                raise ConfigError(f"{source}: key {key!r} takes plain values, found {v!r}")
            tokens.append(_checked(action, str(v), key, source))
        out.append((opt, [f"{opt}={tokens[0]}"] if len(tokens) == 1 else [opt, *tokens]))
    return out


def _checked(action: argparse.Action, value: str, key: str, source: str) -> str:
    """A config value converted and checked as argparse would, so a wrong one names the file and the key
    instead of printing the command's usage."""
    try:
        converted = action.type(value) if callable(action.type) else value
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        kind = getattr(action.type, "__name__", "")
        wanted = {"int": "a whole number", "float": "a number"}.get(kind, f"a valid {kind or 'value'}")
        raise ConfigError(f"{source}: key {key!r} takes {wanted}, found {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{source}: key {key!r} takes one of {', '.join(map(str, action.choices))}, found {value!r}")
    return value


def _named_on_command_line(argv: list[str], options: dict[str, argparse.Action]) -> set[str]:
    """The long options argv names (full names, or unambiguous prefixes as argparse accepts them)."""
    named = set()
    for tok in argv:
        if tok == "--":
            break
        if not tok.startswith("--"):
            continue
        name = tok.split("=", 1)[0]
        if name.startswith("--no-") and "--" + name[5:] in options:
            name = "--" + name[5:]
        if name in options:
            named.add(name)
        else:
            hits = [o for o in options if o.startswith(name)]
            if len(hits) == 1:
                named.add(hits[0])
    return named


def with_config(parser: ConfigurableParser, argv: list[str]) -> list[str]:
    """argv with the --config file's keys put in front as flags (the command line overrides them)."""
    from fer_edge.runtime.cli_args import fix_argv

    path, argv = _config_path(list(argv))
    if path is None:
        return fix_argv(argv)
    tokens = config_tokens(read_config(path), parser, source=str(path))
    options = _long_options(parser)
    named = _named_on_command_line(argv, options)
    # the command line's member of a mutually exclusive group replaces the file's member of it
    overridden = set()
    for group in parser.exclusive:
        members = {o for a in group for o in a.option_strings}
        if members & named:
            overridden |= members
    front = [t for opt, toks in tokens if opt not in overridden for t in toks]
    return fix_argv(front + argv)  # `--normalize -1,1` from either place


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """--config in the help text (with_config removes it from argv before parsing)."""
    parser.add_argument(CONFIG_FLAG, metavar="FILE.toml", help="read options from a TOML file whose keys are the "
                        "long option names (dashes or underscores); flags on the command line override it")
