"""The option table of `streamer run`: every option once, read off the config dataclasses.

The options of a run are declared on the fields that keep them (`streamer.core.options`); the
few that only the command line has (the inputs, `--sources`, `--config`, `--no-progress`,
`--no-cache`, `--profile-startup`) are declared here on `CommandLine`. `TABLE` lists them all,
grouped as `--help`, the README's flag table and a configuration file's tables show them. The parser
(`streamer.cli.flags`), the file reader (`streamer.cli.config_file`) and the builder of the
run's configuration (`streamer.cli.build`) are generated from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from streamer.config import RunConfig
from streamer.core.options import Declared, Option, declared, option

__all__ = ["GROUPS", "TABLE", "CommandLine", "Group", "by_key", "groups", "shown_default"]

#: The sections of `--help` and the tables of a configuration file, in order: name → title.
#: The untitled first section holds the inputs and the general options.
GROUPS = {
    "": "",
    "outputs": "outputs (at least one; with several inputs put {stream} in the names)",
    "encoder": "encoder",
    "analysis": "analysis",
    "captions": "captions",
    "llm-captions": "LLM captions (LM Studio or any OpenAI-compatible server)",
    "contract": "contract",
    "display": "display",
    "alerts": "alerts (text queries: need a CLIP encoder)",
    "web-viewer": "web viewer",
    "archive": "archive (remember and search: recordings and an index of moments)",
    "mqtt": "MQTT and Home Assistant",
    "cluster": "cluster (more than one machine, on Ray)",
    "live-sources": "live sources",
    "decode": "decode",
}


@dataclass(frozen=True, slots=True)
class CommandLine:
    """The options only the command line has (the Python API takes these as arguments)."""

    inputs: tuple[str, ...] = option(
        (),
        Option("inputs", "video file, camera (0, /dev/video0) or URL (rtsp://, http(s)://, "
               ".m3u8), optionally named: door=rtsp://...; several inputs run as streams of one "
               "process", kind="positional", metavar="INPUT"),
    )  # fmt: skip
    sources: str | None = option(
        None,
        Option("--sources", "more inputs, one per line (NAME=SPEC or SPEC, # comments)",
               metavar="FILE"),
    )  # fmt: skip
    config: str | None = option(
        None,
        Option("--config", "TOML file of these options and [[sources]] (README: Configuration "
               "file); flags given here override it, inputs given here are added",
               metavar="FILE"),
    )  # fmt: skip
    progress: bool = option(True, Option("--no-progress", "no progress bar", kind="negated"))
    cache: bool = option(
        True,
        Option(
            "--no-cache",
            "do not cache label text embeddings or encoder exports on disk",
            kind="negated",
        ),
    )
    profile_startup: bool = option(
        False,
        Option("--profile-startup", "print where start-up time goes (imports, sources, model, "
               "text, first frame) once the first frame is analysed", kind="switch"),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Group:
    """A section of `--help` and a table of a configuration file."""

    name: str
    title: str
    rows: tuple[Declared, ...]


def _table() -> tuple[Declared, ...]:
    rows = [*declared(CommandLine, "cli."), *declared(RunConfig)]
    unknown = {row.group for row in rows} - set(GROUPS)
    if unknown:
        raise RuntimeError(f"options declare groups that GROUPS lacks: {sorted(unknown)}")
    order = list(GROUPS)
    return tuple(sorted(rows, key=lambda row: order.index(row.group)))  # stable within a group


#: Every option of `streamer run`, in `--help` order. A path starting with `cli.` is a field of
#: `CommandLine`; any other is a field of `RunConfig` (or of a section it holds).
TABLE: tuple[Declared, ...] = _table()


def by_key() -> dict[str, Declared]:
    """The table by configuration-file key (`max-batch`, `inputs`)."""
    return {row.option.key: row for row in TABLE}


def groups() -> list[Group]:
    """The table's sections, in order, each with its rows."""
    return [
        Group(name, title, tuple(row for row in TABLE if row.group == name))
        for name, title in GROUPS.items()
    ]


def shown_default(row: Declared) -> str | None:
    """The default as `--help` and the README say it; None when there is nothing to say."""
    opt: Option = row.option
    if opt.default_text is not None:
        return opt.default_text
    value: Any = row.default
    if opt.kind in ("switch", "negated", "const", "list", "positional") or row.on_section:
        return None
    if value is None or (opt.kind == "toggle" and value is False and opt.default_text is None):
        return "off" if opt.kind == "toggle" else None
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    return str(value)
