"""argparse from the option table: every flag of `streamer run`, made from its declaration.

Options are added with `default=SUPPRESS`, so a parse holds only what the command line gave;
defaults stay where they are declared (the config fields), and a configuration file's values
sit between the two (`streamer.cli.build.settings`). Each value is typed by its option's
check, so a bad one exits with code 2 naming the flag (``argument --max-batch: must be a
whole number ≥ 1, got '0'``).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any

from streamer.cli.options import TABLE, Group, groups, shown_default
from streamer.core.options import Declared

__all__ = ["add_options", "dest", "help_text"]


def dest(row: Declared) -> str:
    """The attribute of a parse that holds this option (`max_batch`, `no_drop`, `inputs`)."""
    return row.option.key.replace("-", "_")


def help_text(row: Declared) -> str:
    """The option's help with its default, as `--help` and the README show it."""
    default = shown_default(row)
    return f"{row.option.help} (default: {default})" if default else row.option.help


def add_options(
    parser: argparse.ArgumentParser, keys: Iterable[str] | None = None, *, defaults: bool = False
) -> None:
    """Add the options of the table (or only those with these file `keys`) to `parser`,
    in their `--help` sections.

    Args:
        parser: the parser to add to.
        keys: the options wanted (all when None), by file key.
        defaults: give each option its declared default (for a command that borrows a few of
            `run`'s options); by default a parse holds only what was given.
    """
    wanted = set(keys) if keys is not None else None
    for group in groups():
        rows = [r for r in group.rows if wanted is None or r.option.key in wanted]
        if rows:
            _add_group(parser, group, rows, defaults)


def _add_group(
    parser: argparse.ArgumentParser, group: Group, rows: list[Declared], defaults: bool
) -> None:
    container: Any = parser.add_argument_group(group.title) if group.name else parser
    exclusive: dict[str, Any] = {}
    for row in rows:
        target = container
        if row.option.kind == "const":  # flags that set one field exclude each other
            if row.path not in exclusive:
                exclusive[row.path] = container.add_mutually_exclusive_group()
            target = exclusive[row.path]
        _add(target, row, row.default if defaults else argparse.SUPPRESS)


def _add(target: Any, row: Declared, default: Any) -> None:
    opt = row.option
    if opt.kind == "positional":
        target.add_argument(dest(row), nargs="*", metavar=opt.metavar, help=opt.help,
                            default=default)  # fmt: skip
        return
    names = [opt.short, opt.flag] if opt.short else [opt.flag]
    common = {"dest": dest(row), "help": help_text(row), "default": default}
    if opt.kind in ("switch", "negated", "const"):
        target.add_argument(*names, action="store_true", **common)
    elif opt.kind == "toggle":
        target.add_argument(*names, action=argparse.BooleanOptionalAction, **common)
    else:
        extra: dict[str, Any] = {"type": opt.check, "metavar": opt.metavar}
        if opt.kind == "list":
            extra["action"] = "append"
        elif opt.optional:
            extra.update(nargs="?", const=opt.const)
        target.add_argument(*names, **common, **extra)


def optional_values_apart(argv: Sequence[str]) -> list[str]:
    """`argv` with a word after a flag whose value is optional (`--show [grid]`) moved before
    the flag when the flag would refuse it: `streamer run --show clip.mp4` means the window
    and the input, where argparse takes `clip.mp4` for `--show`'s value and fails."""
    flags = {row.option.flag: row.option for row in TABLE if row.option.optional}
    out = list(argv)
    for at in range(len(out) - 1):
        opt, word = flags.get(out[at]), out[at + 1]
        if opt is None or word.startswith("-") or opt.check is None:
            continue
        try:
            opt.check.convert(word)
        except ValueError:
            out[at], out[at + 1] = word, out[at]
    return out


def every_key() -> list[str]:
    """Every option's file key, in table order."""
    return [row.option.key for row in TABLE]
