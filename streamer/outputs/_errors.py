"""The messages of the sinks' errors (`SinkError`, `SinkOpenError` in `streamer.errors`).

Each names the output and the cause, and the fix when there is one (a full disk). The caller
raises the error `from` the original exception; `SinkOpenError` is also an `OSError`, so code
that already handles file errors catches it.
"""

from __future__ import annotations

import errno

from streamer.errors import SinkError, SinkOpenError

_FULL = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file is over the size limit",
         errno.EDQUOT: "the disk quota is used up"}  # fmt: skip


def write_error(
    kind: str, path: str, cause: BaseException, verb: str = "write", *, mp4: str | None = None
) -> SinkError:
    """Build the `SinkError` for a failed write, with the fix when the disk is full.

    Args:
        mp4: for an MP4/MOV output, "fragmented" or "plain": what a full disk leaves of it.
    """
    reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    full = _FULL.get(getattr(cause, "errno", None) or -1)
    if full is None and "No space left" in str(cause):
        full = _FULL[errno.ENOSPC]
    if not full:
        return SinkError(f"cannot {verb} {kind} output {path!r}: {reason}")
    video = {
        "fragmented": "; this MP4 plays up to its last fragment",
        "plain": "; this MP4 will not play: its index goes at its end, which could not be "
        "written (--fragmented writes MP4s that play up to their last fragment after a full "
        "disk)",
    }.get(mp4 or "", "")
    return SinkError(
        f"cannot {verb} {kind} output {path!r}: {full} ({reason}). Fix: free space or write "
        "the outputs to another disk; what was written so far is kept (subtitles and JSON "
        f"Lines up to the last complete line{video})"
    )


def open_error(kind: str, path: str, cause: BaseException) -> SinkOpenError:
    """Build the `SinkOpenError` for `path`, naming the cause (raise it `from` cause)."""
    reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
    return SinkOpenError(f"cannot open {kind} output {path!r}: {reason}")
