"""Configuration files for `streamer run`: TOML in, the run's own options out.

The keys of a file are the options of `streamer run` themselves, read from its argparse parser,
so a flag added to the parser is a key the day it is added, typed and checked by its own
`type`, `choices` and `nargs`. The format::

    output = "rec/{stream}.mp4"     # a key is a long flag without its dashes; `_` works as `-`
    analyze-fps = 2                 # values are typed as the flag types them ("2" works too)
    no-llm = false                  # a switch: true = the flag is given, false = it is not
    alert = ["a person"]            # a repeatable flag takes a list

    [llm]                           # in a table [T], a key K is the option T-K (llm-url) ...
    url = "http://localhost:1234/v1"
    [outputs]                       # ... or the option K of the flag-table group named T
    jsonl = "rec/{stream}.jsonl"

    [[sources]]                     # one table per stream (`inputs = [...]` takes plain specs)
    name = "door"
    input = "rtsp://cam1.local/stream"
    alert = ["a person at the door"]   # per-stream alerts: `--alert door=QUERY`

Flags given on the command line win over the file; inputs and repeatable flags given there are
added to the file's. Paths are relative to the current directory, as on the command line.

Every problem raises `ConfigError` naming the file, the key path (`sources[1].nmae`) and what is
allowed. `install` wires a parser to read `--config FILE` first; `render` writes the effective
options back as TOML, with secrets masked.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import difflib
import math
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from streamer.core.redact import redact
from streamer.errors import ConfigError

__all__ = [
    "FileOptions",
    "Group",
    "Option",
    "Options",
    "from_mapping",
    "install",
    "load",
    "read_toml",
    "render",
]

MASK = "***"
SOURCE_KEYS = ("name", "input", "alert")
_EXIT_USAGE = 2  # streamer.cli.main.EXIT_USAGE; not imported, this module sits below the CLI
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")  # what `NAME=SPEC` accepts as a stream name
_SECRET_KEY = re.compile(r"(?:^|-)(?:api-key|apikey|token|password|passwd|secret)$")
_FILE_ONLY_FLAGS = ("config",)  # options that name the file itself: never keys in it
_UNSET = object()  # a switch set to false: the flag is not given


# --- the options of a parser -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One optional argument of the parser, under the key a file uses for it.

    Attributes:
        key: its long flag without dashes (`analyze-fps`).
        action: the argparse action, which types, checks and stores the value.
        group: the table name of its argparse group (`outputs`); "" for ungrouped options.
    """

    key: str
    action: argparse.Action
    group: str

    @property
    def flag(self) -> str:
        """The flag as typed on the command line (`--analyze-fps`)."""
        return _flag(self.action)


@dataclass(frozen=True, slots=True)
class Group:
    """An argparse argument group: the flag table's section and a file's table `[name]`."""

    name: str
    title: str
    options: tuple[Option, ...]
    positionals: tuple[argparse.Action, ...]


class Options:
    """The options of a parser as a file sees them: by key, by group, and the inputs positional."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.groups = [_group(parser, g) for g in parser._action_groups]
        self.by_key = {o.key: o for g in self.groups for o in g.options}
        self.by_group = {g.name: g for g in self.groups if g.name}
        self.inputs = next(
            (a for g in self.groups for a in g.positionals if a.nargs in ("*", "+")), None
        )

    def file_keys(self) -> list[str]:
        """Every option key a file may hold."""
        return [k for k in self.by_key if k not in _FILE_ONLY_FLAGS]

    def tables(self) -> set[str]:
        """Table names: group names, and every dash-prefix of an option key (`llm`)."""
        prefixes = {k[: m.start()] for k in self.file_keys() for m in re.finditer("-", k)}
        return set(self.by_group) | prefixes

    def in_table(self, table: str) -> dict[str, Option]:
        """The options table `[table]` can set, under the keys it uses for them."""
        found = {
            k[len(table) + 1 :]: o for k, o in self.by_key.items() if k.startswith(table + "-")
        }
        group = self.by_group.get(table)
        for option in group.options if group else ():
            other = found.setdefault(option.key, option)
            if other is not option:
                found[option.key] = _Ambiguous(other, option)
        return {
            k: o
            for k, o in found.items()
            if isinstance(o, _Ambiguous) or o.key not in _FILE_ONLY_FLAGS
        }


@dataclass(frozen=True, slots=True)
class _Ambiguous:
    """A table key that means two different options: rejected with both named."""

    first: Option
    second: Option


def _group(parser: argparse.ArgumentParser, group: argparse._ArgumentGroup) -> Group:
    untitled = group is parser._optionals or group is parser._positionals
    title = group.title or ""
    name = "" if untitled else re.split(r"\s*[(:;]", title)[0].strip().lower().replace(" ", "-")
    options = tuple(
        Option(_key(a), a, name)
        for a in group._group_actions
        if a.option_strings and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
    )
    positionals = tuple(a for a in group._group_actions if not a.option_strings)
    return Group(name, title, options, positionals)


def _flag(action: argparse.Action) -> str:
    return next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])


def _key(action: argparse.Action) -> str:
    long = next((s for s in action.option_strings if s.startswith("--")), None)
    return long[2:] if long else action.dest.replace("_", "-")


# --- reading a file ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileOptions:
    """What a configuration file sets.

    Attributes:
        path: the file.
        values: argparse dest → value, typed as the parser types the flag.
        origins: argparse dest → the key path that set it.
        inputs: the file's inputs as `NAME=SPEC` or `SPEC`, in file order.
    """

    path: str
    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()


def read_toml(path: str) -> dict[str, Any]:
    """The file's TOML document; ConfigError says why it cannot be had (missing, syntax...)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file {path!r} does not exist; check the path (a commented example: "
            "examples/streamer.toml)"
        ) from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config file {path!r} is a folder; give a TOML file") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path!r} cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_message(path, exc)) from exc


def _syntax_message(path: str, exc: tomllib.TOMLDecodeError) -> str:
    reason = str(exc)
    where = re.search(r"\s*\(at line (\d+), column (\d+)\)$", reason)
    if where is None:
        return f"{path}: not valid TOML: {reason}"
    line, column = int(where.group(1)), int(where.group(2))
    message = f"{path}: line {line}, column {column}: not valid TOML: {reason[: where.start()]}"
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read().splitlines()[line - 1]
    except (OSError, UnicodeDecodeError, IndexError):
        return message
    return f"{message}\n    {line} | {text}\n    {' ' * len(str(line))} | {' ' * (column - 1)}^"


def load(path: str, parser: argparse.ArgumentParser) -> FileOptions:
    """Read a configuration file as options of `parser` (the `streamer run` parser).

    Raises:
        ConfigError: the file is missing or not TOML, or a key or value is not allowed; the
            message names the key path and what is allowed.
    """
    return from_mapping(read_toml(path), parser, path)


def from_mapping(data: dict[str, Any], parser: argparse.ArgumentParser, path: str) -> FileOptions:
    """Map a parsed TOML document onto `parser`'s options; `path` only names it in errors."""
    reader = _Reader(Options(parser), path)
    reader.document(data)
    return reader.result()


class _Reader:
    """Walks one document, typing each value by its option's action."""

    def __init__(self, options: Options, path: str) -> None:
        self.options = options
        self.path = path
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.set_by: dict[argparse.Action, str] = {}
        self.inputs: list[str] = []
        self.stream_alerts: list[tuple[str, Any]] = []
        self.names: dict[str, str] = {}

    def document(self, data: dict[str, Any]) -> None:
        tables = self.options.tables()
        for raw, value in data.items():
            key = raw.replace("_", "-")
            if key == "sources" and isinstance(value, list):
                self.sources(value)
            elif key == "sources" and isinstance(value, dict):
                raise self.error(raw, "write [[sources]] (two brackets), one table per stream")
            elif key == "inputs":
                self.plain_inputs(raw, value)
            elif isinstance(value, dict) and key in tables:
                self.table(raw, key, value)
            elif key in self.options.by_key:
                self.option(self.options.by_key[key], raw, value)
            elif key in tables:
                inner = ", ".join(self.options.in_table(key))
                raise self.error(raw, f"= {_toml(value)}: {raw} is a table; write [{raw}] and "
                                 f"under it one of: {inner}")  # fmt: skip
            else:
                allowed = ["inputs", "[[sources]]", *self.options.file_keys()]
                candidates = ["inputs", "sources", *self.options.file_keys(), *sorted(tables)]
                groups = ", ".join(f"[{g}]" for g in self.options.by_group)
                extra = f"; tables: {groups}, or [T] for the options named T-KEY ([llm] url)"
                raise self.unknown(raw, key, candidates, allowed, extra)

    def table(self, raw: str, table: str, body: dict[str, Any]) -> None:
        keys = self.options.in_table(table)
        for inner, value in body.items():
            path = f"{raw}.{inner}"
            option = keys.get(inner.replace("_", "-"))
            if option is None:
                raise self.unknown(path, inner.replace("_", "-"), list(keys), list(keys), "")
            if isinstance(option, _Ambiguous):
                raise self.error(
                    path,
                    f"ambiguous: it could be {option.first.key} or {option.second.key}; "
                    "write that key at the top level instead",
                )
            self.option(option, path, value)

    def option(self, option: Option, path: str, value: Any) -> None:
        if option.key in _FILE_ONLY_FLAGS:
            raise self.error(
                path,
                f"a config file cannot name another one; give {option.flag} on the command line",
            )
        typed = self.convert(option, path, value)
        if typed is _UNSET:
            return
        action = option.action
        if action in self.set_by:
            raise self.error(path, f"set twice: at {self.set_by[action]} and at {path}; keep one")
        if action.dest in self.origins:
            other = next(a for a in self.set_by if a.dest == action.dest)
            why = "they exclude each other" if self.exclusive(action, other) else "both set it"
            raise self.error(path, f"cannot be set with {self.set_by[other]}: {why}, as "
                             f"{option.flag} and {_flag(other)} do; keep one")  # fmt: skip
        self.set_by[action] = path
        self.values[action.dest] = typed
        self.origins[action.dest] = path

    def convert(self, option: Option, path: str, value: Any) -> Any:
        action = option.action
        if isinstance(action, argparse.BooleanOptionalAction):
            return self.boolean(option, path, value)
        if isinstance(action, argparse._CountAction):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise self.bad(option, path, value, "expected a count: an integer ≥ 0")
            return value or _UNSET
        if action.nargs == 0:
            if not self.boolean(option, path, value):
                return _UNSET
            return (
                [action.const] if isinstance(action, argparse._AppendConstAction) else action.const
            )
        if isinstance(action, argparse._AppendAction):
            items = value if isinstance(value, list) else [value]
            if isinstance(action, argparse._ExtendAction):
                return self.arguments(option, path, items) or _UNSET
            if action.nargs in (None, "?"):
                return [
                    self.scalar(option, f"{path}[{i}]", v) for i, v in enumerate(items)
                ] or _UNSET
            return [
                self.arguments(option, f"{path}[{i}]", v) for i, v in enumerate(items)
            ] or _UNSET
        if action.nargs == "?" and isinstance(value, bool):
            return action.const if value else _UNSET
        if action.nargs is None or action.nargs == "?":
            return self.scalar(option, path, value)
        return self.arguments(option, path, value)

    def boolean(self, option: Option, path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.bad(option, path, value, "expected true or false (a switch)")
        return value

    def arguments(self, option: Option, path: str, value: Any) -> list[Any]:
        """A flag that takes several values (`nargs`): a list of them."""
        nargs = option.action.nargs
        items = value if isinstance(value, list) else [value]
        if isinstance(nargs, int) and len(items) != nargs:
            raise self.bad(option, path, value, f"expected a list of exactly {nargs} values")
        if nargs == "+" and not items:
            raise self.bad(option, path, value, "expected a list of at least one value")
        return [self.scalar(option, f"{path}[{i}]", v) for i, v in enumerate(items)]

    def scalar(self, option: Option, path: str, value: Any) -> Any:
        """One value, typed by the action's own `type` and checked against its `choices`."""
        action = option.action
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.bad(option, path, value, f"got {_kind(value)}; expected {_expected(action)}")
        text = value if isinstance(value, str) else _number_text(value)
        convert: Callable[[str], Any] = action.type if callable(action.type) else str
        try:
            typed = convert(text)
        except argparse.ArgumentTypeError as exc:
            raise self.bad(option, path, value, str(exc)) from exc  # the flag's own words
        except (TypeError, ValueError) as exc:
            raise self.bad(option, path, value, f"expected {_expected(action)}") from exc
        if action.choices is not None and typed not in action.choices:
            allowed = ", ".join(_toml(c) for c in action.choices)
            raise self.bad(option, path, value, f"not an allowed value; allowed: {allowed}")
        return typed

    def plain_inputs(self, raw: str, value: Any) -> None:
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise self.error(
                    f"{raw}[{i}]", f"= {_toml(item)}: expected a file, camera or URL as a string"
                )
            self.inputs.append(item)

    def sources(self, entries: list[Any]) -> None:
        for i, entry in enumerate(entries):
            path = f"sources[{i}]"
            if not isinstance(entry, dict):
                raise self.error(path, "each [[sources]] entry is a table: input = \"...\", "
                                 "optionally name = \"...\" and alert = [\"...\"]")  # fmt: skip
            for key in entry:
                if key not in SOURCE_KEYS:
                    allowed = list(SOURCE_KEYS)
                    raise self.unknown(f"{path}.{key}", key, allowed, allowed, "")
            self.source(path, entry)

    def source(self, path: str, entry: dict[str, Any]) -> None:
        spec = entry.get("input")
        if not isinstance(spec, str) or not spec.strip():
            shown = "is missing" if spec is None else f"= {_toml(spec)} is not a string"
            raise self.error(f"{path}.input", f"{shown}: give the stream's file, camera or URL, "
                             "e.g. input = \"rtsp://cam1.local/stream\"")  # fmt: skip
        name = entry.get("name")
        if name is not None:
            if not isinstance(name, str) or not _NAME.match(name):
                raise self.error(
                    f"{path}.name", f"= {_toml(name)}: a stream name uses letters, digits, '_', "
                    "'.' and '-' (it names files through {stream})"
                )  # fmt: skip
            if name in self.names:
                raise self.error(f"{path}.name", f"{name!r} is already the name of "
                                 f"{self.names[name]}; stream names must differ")  # fmt: skip
            self.names[name] = path
        self.inputs.append(f"{name}={spec}" if name else spec)
        if "alert" in entry:
            self.source_alerts(path, name, entry["alert"])

    def source_alerts(self, path: str, name: str | None, value: Any) -> None:
        option = self.options.by_key.get("alert")
        if option is None or not isinstance(option.action, argparse._AppendAction):
            raise self.error(f"{path}.alert", "this streamer has no --alert option to take it")
        if name is None:
            raise self.error(f"{path}.alert", "per-stream alerts need the stream's name: add "
                             "name = \"door\" to this [[sources]] entry")  # fmt: skip
        for i, query in enumerate(value if isinstance(value, list) else [value]):
            where = f"{path}.alert[{i}]" if isinstance(value, list) else f"{path}.alert"
            if not isinstance(query, str) or not query.strip():
                raise self.error(where, f"= {_toml(query)}: expected the query as text, "
                                 "e.g. \"a person at the door\"")  # fmt: skip
            self.stream_alerts.append((where, self.scalar(option, where, f"{name}={query}")))

    def result(self) -> FileOptions:
        self.check_exclusive()
        if self.stream_alerts:
            dest = self.options.by_key["alert"].action.dest
            self.values[dest] = [*self.values.get(dest, []), *(a for _, a in self.stream_alerts)]
            self.origins.setdefault(dest, self.stream_alerts[0][0])
        return FileOptions(self.path, self.values, self.origins, tuple(self.inputs))

    def exclusive(self, one: argparse.Action, other: argparse.Action) -> bool:
        groups = self.options.parser._mutually_exclusive_groups
        return any(one in g._group_actions and other in g._group_actions for g in groups)

    def check_exclusive(self) -> None:
        for group in self.options.parser._mutually_exclusive_groups:
            given = [self.set_by[a] for a in group._group_actions if a in self.set_by]
            if len(given) > 1:
                raise self.error(given[1], f"cannot be set with {given[0]}: they exclude each "
                                 "other, as their flags do; keep one")  # fmt: skip

    def error(self, path: str, message: str) -> ConfigError:
        separator = " " if message.startswith("=") else ": "
        return ConfigError(f"{self.path}: {path}{separator}{message}")

    def bad(self, option: Option, path: str, value: Any, reason: str) -> ConfigError:
        return self.error(path, f"= {_toml(value)}: {reason} (like {option.flag})")

    def unknown(
        self, path: str, key: str, candidates: Sequence[str], allowed: Iterable[str], extra: str
    ) -> ConfigError:
        close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return self.error(path, f"unknown key{hint}; allowed here: {', '.join(allowed)}{extra}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"{_toml(value)} (a switch value)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return "a date or time"
    return type(value).__name__


def _expected(action: argparse.Action) -> str:
    if action.choices is not None:
        return "one of " + ", ".join(_toml(c) for c in action.choices)
    kind = action.type
    described = getattr(kind, "expected", None)  # a checked type says what it allows
    if isinstance(described, str):
        return described
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is None or kind is str:
        return "a string"
    return "a single value"  # a custom type explains itself when it rejects one


def _number_text(value: int | float) -> str:
    return repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)


# --- wiring a parser ---------------------------------------------------------------------


def install(
    parser: argparse.ArgumentParser,
    *,
    file_dests: Sequence[str] = ("config",),
    keys_from: argparse.ArgumentParser | None = None,
) -> None:
    """Make `parser` read the file given with `--config FILE` before its own flags.

    It parses twice: once to find the file, then again with the file's values as the defaults
    of this parse (so flags on the command line win) and the file's inputs put before those of
    the command line. A bad file exits with code 2 and the message, like a bad flag.

    Wrapping `parse_known_args` (rather than changing `main`) keeps this working where argparse
    calls it: as a subcommand of `streamer`, and in `streamer config`.

    Args:
        parser: the parser to wire (`streamer run`, `streamer config`).
        file_dests: the dests of its options that name a file to read.
        keys_from: the parser whose options the file holds (default: `parser`).
    """
    parse = parser.parse_known_args
    schema = keys_from or parser

    def parse_known_args(args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        if "-h" in args or "--help" in args:
            return parse(args, namespace)
        first, _ = parse(args, None if namespace is None else copy.copy(namespace))
        paths = list(dict.fromkeys(p for d in file_dests if (p := getattr(first, d, None))))
        if not paths:
            return parse(args, namespace)
        try:
            if len(paths) > 1:
                raise ConfigError(f"two config files given ({', '.join(paths)}); give one")
            loaded = load(paths[0], schema)
        except ConfigError as exc:
            parser.exit(_EXIT_USAGE, f"streamer: error: {exc}\n")
        namespace = namespace or argparse.Namespace()
        for dest, value in loaded.values.items():
            if not hasattr(namespace, dest):
                setattr(namespace, dest, value)
        namespace, extras = parse(args, namespace)
        _after_parse(Options(schema), namespace, loaded)
        return namespace, extras

    parser.parse_known_args = parse_known_args


def _after_parse(options: Options, namespace: argparse.Namespace, loaded: FileOptions) -> None:
    """Put the file's inputs first, and let a flag override the file's choice among flags that
    exclude each other (`--live` in the file, `--no-drop` given: the flag wins)."""
    if options.inputs is not None:
        dest = options.inputs.dest
        setattr(namespace, dest, [*loaded.inputs, *(getattr(namespace, dest, None) or [])])
    for group in options.parser._mutually_exclusive_groups:
        changed = [a for a in group._group_actions if getattr(namespace, a.dest) != a.default]
        from_file = [
            a for a in changed
            if a.dest in loaded.values and getattr(namespace, a.dest) == loaded.values[a.dest]
        ]  # fmt: skip
        if len(changed) > len(from_file) > 0:
            for action in from_file:
                setattr(namespace, action.dest, action.default)
    namespace.config_loaded = loaded


# --- writing the effective configuration -------------------------------------------------


def render(parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> str:
    """The effective options in `namespace` as a TOML configuration file, secrets masked.

    Every option is written (unset ones as comments), grouped as in `--help`, each set value
    marked with where it came from. Loading the output gives the same options back, except
    the masked secrets.
    """
    options = Options(parser)
    loaded: FileOptions | None = getattr(namespace, "config_loaded", None)
    source = f"defaults < {loaded.path} < command line" if loaded else "defaults < command line"
    lines = [
        "# The effective options of `streamer run` (" + source + ").",
        f"# Secrets are shown as {MASK}.",
    ]
    if options.inputs is not None:
        inputs = getattr(namespace, options.inputs.dest, None) or []
        lines.append(f"inputs = {_toml([_mask('input', i) for i in inputs])}")
    for group in options.groups:
        shown = [o for o in group.options if o.key not in _FILE_ONLY_FLAGS]
        if not shown:
            continue
        table = f"  (table [{group.name}])" if group.name else ""
        lines += ["", f"# {group.title}{table}" if group.name else "# general"]
        lines += [_render_option(o, namespace, loaded) for o in shown]
    return "\n".join(lines) + "\n"


def _render_option(
    option: Option, namespace: argparse.Namespace, loaded: FileOptions | None
) -> str:
    action = option.action
    value = getattr(namespace, action.dest, None)
    switch = action.nargs == 0 and not isinstance(
        action, argparse._CountAction | argparse.BooleanOptionalAction | argparse._AppendConstAction
    )
    if switch:
        on = value == action.const and value is not None and value != action.default
        line = f"{option.key} = {_toml(on)}"
        changed = on
    elif value is None:
        return f"# {option.key}: not set"
    else:
        line = f"{option.key} = {_toml(_mask(option.key, value))}"
        changed = value != action.default
    if not changed:
        return line
    in_file = loaded is not None and action.dest in loaded.values
    same = in_file and loaded.values[action.dest] == value
    return f"{line}  # from {'the file' if same else 'the command line'}"


def _mask(key: str, value: Any) -> Any:
    """`value` fit to show: secrets by name, URL credentials and tokens, webhook paths."""
    if isinstance(value, list | tuple):
        return [_mask(key, v) for v in value]
    if not isinstance(value, str):
        return value
    if _SECRET_KEY.search(key):
        return MASK if value else value
    if "webhook" in key:
        value = _mask_url_path(value)
    return redact(value)


def _mask_url_path(url: str) -> str:
    """Webhook URLs often are the secret (Slack, Discord: a token in the path): keep the host."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    path = "/" + MASK if parts.path.strip("/") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, MASK if parts.query else "", ""))


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}  # fmt: skip


def _toml(value: Any) -> str:
    """A TOML value (strings, numbers, booleans, lists); anything else as its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    text = value if isinstance(value, str) else str(value)
    return '"' + "".join(_escape(c) for c in text) + '"'


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char
