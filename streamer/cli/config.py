"""`streamer config`: show or check the configuration a `streamer run` would use.

    streamer config --print [--config FILE] [run options] [INPUT ...]
    streamer config --check FILE [run options] [INPUT ...]

`--print` writes the effective options (defaults < file < command line) as TOML, secrets
masked; `--check` validates the file, and the run configuration it makes with any flags given,
without opening an input or loading a model. Exit 0 when valid, 2 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import sys

from streamer.cli._toml import mask, toml
from streamer.cli.build import Settings, check_configuration, settings
from streamer.cli.exits import EXIT_OK, report
from streamer.cli.flags import add_options
from streamer.cli.options import groups
from streamer.core.options import Declared
from streamer.core.redact import redact
from streamer.errors import ConfigError

__all__ = ["add_parser", "config_command", "render"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `config` on the `streamer` command's subparsers: it takes every option of
    `run` (they are what it prints and checks)."""
    parser = commands.add_parser(
        "config",
        help="print the effective configuration, or check a configuration file",
        usage="streamer config (--print [--config FILE] | --check FILE) [run options] [INPUT ...]",
        description="Print the options `streamer run` would use with these arguments "
        "(defaults < --config FILE < flags), as TOML with secrets masked; or check a "
        "configuration file. Takes every option of `streamer run`.",
    )
    what = parser.add_argument_group("config")
    mode = what.add_mutually_exclusive_group(required=True)
    mode.add_argument("--print", action="store_true", help="print the effective configuration")
    mode.add_argument(
        "--check", metavar="FILE", help="check a configuration file (and any flags given)"
    )
    add_options(parser)
    parser.set_defaults(handler=config_command)


def config_command(args: argparse.Namespace) -> int:
    """Print (`--print`) or check (`--check`)."""
    if args.check is not None:
        if vars(args).get("config", args.check) != args.check:
            two = f"two config files given ({args.config}, {args.check}); give one"
            return report(ConfigError(two))
        args = argparse.Namespace(**{**vars(args), "config": args.check})
    try:
        given = settings(args)
    except Exception as exc:
        return report(exc)
    if args.print:
        sys.stdout.write(render(given))
        return EXIT_OK
    try:
        config = check_configuration(given)
    except Exception as exc:
        return report(exc, context=f"{args.check}: ")
    inputs = ", ".join(redact(spec) for spec in config.inputs)
    outputs = ", ".join(config.outputs.paths()) or "no files"
    print(f"{args.check}: ok: {len(config.inputs)} input(s): {inputs}; outputs: {outputs}")
    return EXIT_OK


def render(given: Settings) -> str:
    """The effective options as a TOML configuration file, secrets masked.

    Every option is written (unset ones as comments), grouped as in `--help`, each value the
    file or the command line set marked with where it came from, even one equal to its default;
    unmarked values are the defaults. Loading the output gives the same options back, except
    the masked secrets.
    """
    source = (
        f"defaults < {given.file.path} < command line" if given.file else "defaults < command line"
    )
    own = given.file.stream_entries if given.file else {}  # streams with settings of their own
    inputs = given.values.get("inputs", [])
    plain = [i for i in inputs if i.split("=", 1)[0] not in own or "=" not in i]
    lines = [
        "# The effective options of `streamer run` (" + source + ").",
        "# Each value set by the file or the command line says so; unmarked ones are defaults.",
        "# Secrets are shown as ***.",
        f"inputs = {toml([mask('input', i) for i in plain])}",
    ]
    for group in groups():
        rows = [r for r in group.rows if r.option.key not in ("config", "inputs")]
        if not rows:
            continue
        table = f"  (table [{group.name}])" if group.name else ""
        lines += ["", f"# {group.title}{table}" if group.name else "# general"]
        lines += [_line(row, given) for row in rows]
    for spec in (i for i in inputs if i not in plain):
        name, _, spec = spec.partition("=")
        lines += ["", "[[sources]]", f"name = {toml(name)}",
                  f"input = {toml(mask('input', spec))}"]  # fmt: skip
        lines += [f"{key} = {toml(value)}" for key, value in own[name].items()]
    return "\n".join(lines) + "\n"


def _line(row: Declared, given: Settings) -> str:
    opt, key = row.option, row.option.key
    value = given.get(key)
    if value is None:
        return f"# {key}: not set"
    line = f"{key} = {toml(mask(key, value, opt.secret))}"
    if key not in given.values:
        return line
    return f"{line}  # from {_source(row, given)}"


def _source(row: Declared, given: Settings) -> str:
    """Who set a given option: the file, the command line, or both (a repeatable flag given on
    the command line adds to the file's list; any other overrides the file's value)."""
    key = row.option.key
    if key in given.origins:
        return "the file"
    if row.option.kind == "list" and given.file is not None and key in given.file.values:
        return "the file and the command line"
    return "the command line"
