"""The `streamer` command line: the entry point, the subcommands, logging. Only the CLI reads
argv and installs signal handlers (`streamer run`: `streamer.cli.run.run_with_signals`).

Exit codes are listed in `streamer.cli.exits`; each error states its own (`streamer.errors`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from streamer import __version__
from streamer.cli._parser import Parser
from streamer.cli._stderr import unblocked_stderr
from streamer.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_PIPE_CLOSED, report

log = logging.getLogger("streamer")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `streamer` console script."""
    parser = build_parser()
    from streamer.cli.flags import optional_values_apart  # loaded by build_parser already

    args = parser.parse_args(optional_values_apart(sys.argv[1:] if argv is None else argv))
    with unblocked_stderr():  # a stderr nobody reads never stops the command
        _setup_logging(args.verbose - args.quiet)
        try:
            return args.handler(args)
        except KeyboardInterrupt:
            print("streamer: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            _wait_for_exports()


def _wait_for_exports() -> None:
    """A live first run's export still being made by its child process is waited for here,
    while the log still goes through this command's stderr (`encoders.backends.background`);
    a command that made none imports nothing for it."""
    background = sys.modules.get("encoders.backends.background")
    if background is not None:
        background.wait_for_exports()


def console() -> None:
    """The `streamer` console script: `main`, then the process's exit.

    A run stopped while its model was being exported has abandoned that load: its thread may
    still be inside torch or OpenVINO, and Python 3.11 ends such a thread at exit in a way
    C++ code turns into an abort (SIGABRT, "terminate called without an active exception").
    One stopped during a first run's label embeddings leaves the encoder's thread in the text
    tower, which the interpreter would wait for. Nothing of that work is wanted, so the process
    then leaves at once, after flushing its output, with the run's exit code (an unfinished
    export is swept by the next one).
    """
    try:
        code = main()
    except KeyboardInterrupt:  # before the command began: building the parser imports a lot
        print("streamer: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # `streamer archive info A | head -1`: the reader has what it wanted
        # Python would flush stdout again at exit, into the closed pipe, and complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_PIPE_CLOSED)
    if code not in (EXIT_OK, EXIT_INTERRUPTED):
        # The error is the last word: an abandoned load's "runs on OpenVINO" does not follow it.
        logging.disable(logging.INFO)
    from streamer.core.background import unfinished_threads

    deadline = time.monotonic() + 0.5  # a thread that has just handed over its result ends
    for thread in unfinished_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    if unfinished_threads():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="streamer",
        description="Annotate video with image-encoder tags, scene changes and captions.",
    )
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from streamer.cli import (
        archive,
        ask,
        bench,
        config,
        encoders,
        llm,
        run,
        search,
        serve,
        streams,
    )

    run.add_parser(commands)
    config.add_parser(commands)
    encoders.add_parser(commands)
    llm.add_parser(commands)
    bench.add_parser(commands)
    search.add_parser(commands)
    ask.add_parser(commands)
    archive.add_parser(commands)
    serve.add_parser(commands)
    streams.add_parser(commands)
    sample = commands.add_parser("sample", help="fetch the sample clip and print its path")
    sample.add_argument("--cache-dir", help="where to keep it (default: ~/.cache/streamer/samples)")
    sample.set_defaults(handler=_sample)
    _loudness_after_commands(parser)
    return parser


def _loudness_after_commands(parser: argparse.ArgumentParser) -> None:
    """-v and -q after any command too (`streamer run clip.mp4 -v`), where people put them."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for command in action.choices.values():
            for flags, more in ((("-v", "--verbose"), "more"), (("-q", "--quiet"), "less")):
                if flags[0] not in command._option_string_actions:
                    command.add_argument(*flags, action="count", default=argparse.SUPPRESS,
                                         help=f"{more} log output")  # fmt: skip
            _loudness_after_commands(command)


def _sample(args: argparse.Namespace) -> int:
    from streamer.core.samples import CREDIT, sample_clip

    try:
        path = sample_clip(args.cache_dir)
    except Exception as exc:
        return report(exc)
    print(path)
    print(f"({CREDIT})", file=sys.stderr)
    return EXIT_OK


def _setup_logging(level: int) -> None:
    levels = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
    logging.basicConfig(
        level=levels[max(-2, min(1, level))],
        format="streamer: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    # Libraries below us are chatty at INFO; keep their warnings and errors only.
    quiet = max(logging.WARNING, levels[max(-2, min(1, level))])
    # (onnxscript and onnx_ir: a line per graph rewrite of an ONNX export, hundreds)
    for name in ("httpx", "huggingface_hub", "urllib3", "open_clip", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(quiet)
    # NNCF's int8 import makes torch look for a CUDA toolkit; on a CPU machine that is no news
    logging.getLogger("torch.utils.cpp_extension").setLevel(max(logging.ERROR, quiet))
    # open_clip also logs on the root logger itself: drop those below WARNING at the handler
    # (setting the root logger's level would silence streamer's own INFO lines as well).
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: record.name != "root" or record.levelno >= quiet)


if __name__ == "__main__":
    console()
