"""Errors raised by the output sinks.

::

    SinkError(Exception)                 any failure writing an output
     └── SinkOpenError(SinkError, OSError)  the output could not be created or opened

`SinkOpenError` is raised at construction, so a bad path fails before the first frame is
processed. Its message names the path and the cause, and it is raised `from` the original
exception. It is also an `OSError`, so code that already handles file errors catches it.
"""

from __future__ import annotations


class SinkError(Exception):
    """Writing an output (video, subtitles, JSON Lines) failed."""


class SinkOpenError(SinkError, OSError):
    """An output file could not be created or opened for writing."""


def open_error(kind: str, path: str, cause: BaseException) -> SinkOpenError:
    """Build the `SinkOpenError` for `path`, naming the cause (raise it `from` cause)."""
    reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    return SinkOpenError(f"cannot open {kind} output {path!r}: {reason}")
