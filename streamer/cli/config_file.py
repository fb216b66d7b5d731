"""Configuration files for `streamer run`: TOML in, the run's own options out.

The keys of a file are the options of the option table (`streamer.cli.options`), so an option
declared today is a key today, typed and checked by its own declaration. The format::

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
    labels = "person, dog, car"        # what PATCH /api/streams/door changes: labels, alerts
    captions = "off"                   # (its whole set), captions, analyze-fps

Flags given on the command line win over the file; inputs and repeatable flags given there are
added to the file's (`streamer.cli.build`). Paths are relative to the current directory, as on
the command line. Every problem raises `ConfigError` naming the file, the key path
(`sources[1].nmae`) and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.cli._toml import toml
from streamer.cli.options import GROUPS, TABLE
from streamer.core.options import Declared, Option
from streamer.core.redact import redact
from streamer.core.spelling import closest
from streamer.errors import ConfigError

__all__ = ["FileOptions", "Keys", "from_mapping", "load", "read_toml"]

STREAM_KEYS = ("analyze-fps", "labels", "alerts", "captions")  # what the stream API changes
SOURCE_KEYS = ("name", "input", "alert", *STREAM_KEYS)
FILE_ONLY = ("config",)  # options that name the file itself: never keys in it
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")  # what `NAME=SPEC` accepts as a stream name
_UNSET = object()  # a switch set to false: as if the flag were not given


@dataclass(frozen=True, slots=True)
class FileOptions:
    """What a configuration file sets.

    Attributes:
        path: the file.
        values: option key → value, typed as the command line types it.
        origins: option key → the key path that set it (`analysis.max-batch`).
        inputs: the file's inputs as `NAME=SPEC` or `SPEC`, in file order.
        stream_settings: stream name → the settings its [[sources]] entry gives (as a
            stream API change gives them: option path → typed value).
        stream_entries: stream name → those settings as the file wrote them (for printing).
    """

    path: str
    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    stream_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream_entries: dict[str, dict[str, Any]] = field(default_factory=dict)


class Keys:
    """The options of a table as a file sees them: by key, by table, and which exclude which."""

    def __init__(self, rows: Sequence[Declared] = TABLE) -> None:
        self.rows = list(rows)
        self.by_key = {r.option.key: r for r in self.rows if r.option.kind != "positional"}
        self.groups = list(dict.fromkeys(r.group for r in self.rows if r.group))

    def file_keys(self) -> list[str]:
        """Every option key a file may hold."""
        return [k for k in self.by_key if k not in FILE_ONLY]

    def tables(self) -> set[str]:
        """Table names: group names, and every dash-prefix of an option key (`llm`)."""
        prefixes = {k[: m.start()] for k in self.file_keys() for m in re.finditer("-", k)}
        return set(self.groups) | prefixes

    def in_table(self, table: str) -> dict[str, Declared | tuple[Declared, Declared]]:
        """The options table `[table]` can set, under the keys it uses for them; a key that
        means two options maps to both (refused as ambiguous)."""
        found: dict[str, Any] = {
            k[len(table) + 1 :]: r for k, r in self.by_key.items() if k.startswith(table + "-")
        }
        for row in self.by_key.values():
            if row.group == table:
                other = found.setdefault(row.option.key, row)
                if other is not row:
                    found[row.option.key] = (other, row)
        return {
            k: r for k, r in found.items() if isinstance(r, tuple) or r.option.key not in FILE_ONLY
        }


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


def load(path: str, rows: Sequence[Declared] = TABLE) -> FileOptions:
    """Read a configuration file as options of the table (`streamer run`'s by default).

    Raises:
        ConfigError: the file is missing or not TOML, or a key or value is not allowed; the
            message names the key path and what is allowed.
    """
    return from_mapping(read_toml(path), path, rows)


def from_mapping(data: dict[str, Any], path: str, rows: Sequence[Declared] = TABLE) -> FileOptions:
    """Map a parsed TOML document onto the options; `path` only names it in errors."""
    reader = _Reader(Keys(rows), path)
    reader.document(data)
    return reader.result()


class _Reader:
    """Walks one document, typing each value by its option's declaration."""

    def __init__(self, keys: Keys, path: str) -> None:
        self.keys = keys
        self.path = path
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.inputs: list[str] = []
        self.stream_alerts: list[tuple[str, Any]] = []
        self.stream_settings: dict[str, dict[str, Any]] = {}
        self.stream_entries: dict[str, dict[str, Any]] = {}
        self.names: dict[str, str] = {}

    def document(self, data: dict[str, Any]) -> None:
        tables = self.keys.tables()
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
            elif key in self.keys.by_key:
                self.option(self.keys.by_key[key], raw, value)
            elif key in tables:
                inner = ", ".join(self.keys.in_table(key))
                raise self.error(raw, f"= {toml(value)}: {raw} is a table; write [{raw}] and "
                                 f"under it one of: {inner}")  # fmt: skip
            else:
                self.unknown_top(raw, key, tables)

    def unknown_top(self, raw: str, key: str, tables: set[str]) -> None:
        allowed = ["inputs", "[[sources]]", *self.keys.file_keys()]
        candidates = ["inputs", "sources", *self.keys.file_keys(), *sorted(tables)]
        groups = ", ".join(f"[{g}]" for g in self.keys.groups)
        extra = f"; tables: {groups}, or [T] for the options named T-KEY ([llm] url)"
        raise self.unknown(raw, key, candidates, allowed, extra)

    def table(self, raw: str, table: str, body: dict[str, Any]) -> None:
        keys = self.keys.in_table(table)
        for inner, value in body.items():
            path = f"{raw}.{inner}"
            row = keys.get(inner.replace("_", "-"))
            if row is None:
                raise self.unknown(path, inner.replace("_", "-"), list(keys), list(keys), "")
            if isinstance(row, tuple):
                raise self.error(
                    path,
                    f"ambiguous: it could be {row[0].option.key} or {row[1].option.key}; "
                    "write that key at the top level instead",
                )
            self.option(row, path, value)

    def option(self, row: Declared, path: str, value: Any) -> None:
        opt = row.option
        if opt.key in FILE_ONLY:
            raise self.error(
                path, f"a config file cannot name another one; give {opt.flag} on the command line"
            )
        typed = self.convert(opt, path, value)
        if typed is _UNSET:
            return
        if opt.key in self.origins:
            raise self.error(path, f"set twice: at {self.origins[opt.key]} and at {path}; keep one")
        for other, where in self.origins.items():
            other_row = self.keys.by_key[other]
            if other_row.path == row.path and other_row.option.kind == opt.kind == "const":
                flags = f"{opt.flag} and {other_row.option.flag}"
                raise self.error(path, f"cannot be set with {where}: they exclude each other, "
                                 f"as {flags} do; keep one")  # fmt: skip
        self.values[opt.key] = typed
        self.origins[opt.key] = path

    def convert(self, opt: Option, path: str, value: Any) -> Any:
        if opt.kind == "toggle":
            return self.boolean(opt, path, value)
        if opt.kind in ("switch", "negated", "const"):
            return True if self.boolean(opt, path, value) else _UNSET
        if opt.kind == "list":
            items = value if isinstance(value, list) else [value]
            return [self.scalar(opt, f"{path}[{i}]", v) for i, v in enumerate(items)] or _UNSET
        if opt.optional and isinstance(value, bool):
            return opt.const if value else _UNSET
        return self.scalar(opt, path, value)

    def boolean(self, opt: Option, path: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.bad(opt, path, value, "expected true or false (a switch)")
        return value

    def scalar(self, opt: Option, path: str, value: Any) -> Any:
        """One value, typed by the option's own check (`Option.read`: a JSON body's too)."""
        try:
            return opt.read(value)
        except ValueError as exc:
            raise self.bad(opt, path, value, str(exc)) from exc

    def plain_inputs(self, raw: str, value: Any) -> None:
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise self.error(
                    f"{raw}[{i}]", f"= {toml(item)}: expected a file, camera or URL as a string"
                )
            self.inputs.append(item)

    def sources(self, entries: list[Any]) -> None:
        for i, entry in enumerate(entries):
            path = f"sources[{i}]"
            if not isinstance(entry, dict):
                raise self.error(path, "each [[sources]] entry is a table: input = \"...\", "
                                 "optionally name = \"...\", alert = [\"...\"] and the "
                                 f"stream's own {', '.join(STREAM_KEYS)}")  # fmt: skip
            for raw in entry:
                key = raw.replace("_", "-")
                if key not in SOURCE_KEYS:
                    allowed = list(SOURCE_KEYS)
                    raise self.unknown(f"{path}.{raw}", key, allowed, allowed, "")
            self.source(path, entry)

    def source(self, path: str, entry: dict[str, Any]) -> None:
        spec = entry.get("input")
        if not isinstance(spec, str) or not spec.strip():
            shown = "is missing" if spec is None else f"= {toml(spec)} is not a string"
            raise self.error(f"{path}.input", f"{shown}: give the stream's file, camera or URL, "
                             "e.g. input = \"rtsp://cam1.local/stream\"")  # fmt: skip
        name = entry.get("name")
        if name is not None:
            self.check_name(path, name)
        self.inputs.append(f"{name}={spec}" if name else spec)
        if "alert" in entry:
            self.source_alerts(path, name, entry["alert"])
        own = {k: v for k, v in entry.items() if k.replace("_", "-") in STREAM_KEYS}
        if own:
            self.source_settings(path, name, own, "alert" in entry)

    def check_name(self, path: str, name: Any) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.error(
                f"{path}.name", f"= {toml(name)}: a stream name uses letters, digits, '_', "
                "'.' and '-' (it names files through {stream})"
            )  # fmt: skip
        if name in self.names:
            raise self.error(f"{path}.name", f"{name!r} is already the name of "
                             f"{self.names[name]}; stream names must differ")  # fmt: skip
        self.names[name] = path

    def source_alerts(self, path: str, name: str | None, value: Any) -> None:
        row = self.keys.by_key.get("alert")
        if row is None:
            raise self.error(f"{path}.alert", "these options have no --alert to take it")
        if name is None:
            raise self.error(f"{path}.alert", "per-stream alerts need the stream's name: add "
                             "name = \"door\" to this [[sources]] entry")  # fmt: skip
        for i, query in enumerate(value if isinstance(value, list) else [value]):
            where = f"{path}.alert[{i}]" if isinstance(value, list) else f"{path}.alert"
            if not isinstance(query, str) or not query.strip():
                raise self.error(where, f"= {toml(query)}: expected the query as text, "
                                 "e.g. \"a person at the door\"")  # fmt: skip
            self.stream_alerts.append((where, self.scalar(row.option, where, f"{name}={query}")))

    def source_settings(
        self, path: str, name: str | None, own: dict[str, Any], alert: bool
    ) -> None:
        """A stream's own settings, read as a stream API change reads them (the same option
        declarations and words)."""
        from streamer.watch.web.stream_api import parse_body  # the API's reader: loaded here

        first = next(iter(own))
        if name is None:
            raise self.error(f"{path}.{first}", "a stream's own settings need its name: add "
                             "name = \"door\" to this [[sources]] entry")  # fmt: skip
        if alert and any(k == "alerts" for k in own):
            raise self.error(f"{path}.alerts", "give alert (added to the run's alerts) or "
                             "alerts (the stream's whole set), not both")  # fmt: skip
        try:
            self.stream_settings[name] = parse_body(own, "change").settings
            self.stream_entries[name] = {k.replace("_", "-"): v for k, v in own.items()}
        except ConfigError as exc:
            raise ConfigError(redact(f"{self.path}: {path}.{exc}")) from None

    def result(self) -> FileOptions:
        if self.stream_alerts:
            self.values["alert"] = [*self.values.get("alert", []),
                                    *(a for _, a in self.stream_alerts)]  # fmt: skip
            self.origins.setdefault("alert", self.stream_alerts[0][0])
        return FileOptions(self.path, self.values, self.origins, tuple(self.inputs),
                           self.stream_settings, self.stream_entries)  # fmt: skip

    def error(self, path: str, message: str) -> ConfigError:
        separator = " " if message.startswith("=") else ": "
        return ConfigError(f"{self.path}: {path}{separator}{message}")

    def bad(self, opt: Option, path: str, value: Any, reason: str) -> ConfigError:
        # A URL's credentials are not repeated back (a broker's, a camera's, an LLM server's).
        return self.error(path, redact(f"= {toml(value)}: {reason} (like {opt.flag})"))

    def unknown(
        self, path: str, key: str, candidates: Sequence[str], allowed: Iterable[str], extra: str
    ) -> ConfigError:
        # `encoder-weights`: a table's name before an option of its own (`weights`) is the
        # likelier meaning than a near spelling (`encoders`)
        close = [key[len(g) + 1 :] for g in GROUPS if g and key.startswith(f"{g}-")]
        close = [rest for rest in close if rest in candidates]
        # A slip of a letter or two, not any word that shares a few ("blah" is not "batch")
        hint = close[0] if close else closest(key, candidates)
        hint = f" (did you mean {hint!r}?)" if hint else ""
        return self.error(path, f"unknown key{hint}; allowed here: {', '.join(allowed)}{extra}")
