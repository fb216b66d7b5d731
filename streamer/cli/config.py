"""`streamer config`: show or check the configuration a `streamer run` would use.

    streamer config --print [--config FILE] [run options] [INPUT ...]
    streamer config --check FILE [run options] [INPUT ...]

`--print` writes the effective options (defaults < file < command line) as TOML, secrets
masked; `--check` validates the file, and the run configuration it makes with any flags given,
without opening an input or loading a model. Exit 0 when valid, 2 with the reason otherwise.
"""

from __future__ import annotations

import argparse
import functools
import sys

from streamer.cli import config_file
from streamer.cli.exits import EXIT_OK, report
from streamer.sources import redact


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register `config` on the `streamer` command's subparsers; `run` must be registered first,
    as `config` takes every option of `run` (they are what it prints and checks)."""
    run = commands.choices["run"]
    parser = commands.add_parser(
        "config",
        parents=[run],
        add_help=False,  # `run`'s -h comes with its options
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
    parser.set_defaults(handler=functools.partial(config_command, run))
    config_file.install(parser, file_dests=("config", "check"), keys_from=run)


def config_command(run: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print (`--print`) or check (`--check`); `run` is the `streamer run` parser."""
    if args.print:
        sys.stdout.write(config_file.render(run, args))
        return EXIT_OK
    from streamer.cli.run import config_from_args

    try:
        config = config_from_args(args)
    except Exception as exc:
        return report(exc, context=f"{args.check}: ")
    inputs = ", ".join(redact(spec) for spec in config.inputs)
    outputs = ", ".join(config.outputs.paths()) or "no files"
    print(f"{args.check}: ok: {len(config.inputs)} input(s): {inputs}; outputs: {outputs}")
    return EXIT_OK
