"""Exit codes of the `streamer` command, and the one place an exception becomes one.

Every error `streamer` raises on purpose is a `StreamerError` whose class states its exit code
(`streamer.errors`), so a command does not list exceptions: it hands what stopped it to
`report`, which prints the message and returns the code, or re-raises what is a bug.

    0    done
    1    a runtime error (input, encoder, LLM, output); also a live source that failed for good
    2    bad usage or an option value outside what it allows
    3    the input ended early (truncated or damaged; what decoded was annotated and written)
    130  interrupted by Ctrl-C (SIGINT); 128 + N when signal N stopped it (143: SIGTERM)
"""

from __future__ import annotations

import sys

from streamer.errors import StreamerError, from_encoder_error

__all__ = [
    "EXIT_ERROR",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PIPE_CLOSED",
    "EXIT_USAGE",
    "OUTCOMES",
    "exit_code",
    "report",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what a program killed by SIGPIPE ends with

OUTCOMES = (
    ("0", "done"),
    ("130", "interrupted: Ctrl-C once stops decoding and finalises every output (a playable "
     "MP4 with every frame written so far, complete subtitles and JSON Lines); twice aborts, "
     "still closing files"),
    ("128 + N", "stopped by signal N: 143 for SIGTERM (`kill`, `docker stop`, systemd), with "
     "the same graceful finish as Ctrl-C; 141 when what reads a command's printout stopped "
     "reading (`streamer search … | head -1`: as SIGPIPE would; a run whose `--jsonl -` "
     "reader ends exits 1, see *What happens when…*)"),
)  # fmt: skip
"""The exit codes no error class states: (code, what it means), for the README's table."""


def exit_code(exc: BaseException) -> int | None:
    """The exit code `exc` ends a command with; None when it is a bug, to be re-raised.

    A `StreamerError` states its own code; an `encoders` error takes its twin's (an unknown
    model is bad usage, anything else a runtime error); Ctrl-C is 130; an `OSError` that is
    not ours (a port in use, a file the run needed) is a runtime error.
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    encoder_errors = sys.modules.get("encoders.errors")  # none exists before encoders loads
    if encoder_errors is not None and isinstance(exc, encoder_errors.EncoderError):
        exc = from_encoder_error(exc)
    if isinstance(exc, StreamerError):
        return exc.exit_code
    if isinstance(exc, OSError):
        return EXIT_ERROR
    return None


def report(exc: BaseException, prog: str = "streamer", context: str = "") -> int:
    """Print `exc` as the command's error and return its exit code; re-raise a bug.

    Args:
        exc: what stopped the command.
        prog: the message's prefix ("streamer", "streamer llm-check").
        context: put before the message, e.g. the file being checked.

    Returns:
        The exit code (`exit_code`).

    Raises:
        `exc` itself when it is not an error `streamer` reports (a bug: the traceback shows).
    """
    code = exit_code(exc)
    if code is None:
        raise exc
    print(f"{prog}: error: {context}{exc}", file=sys.stderr)
    return code
