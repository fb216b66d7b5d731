"""Append a whole record to a text output, or nothing: what is in the file stays parseable.

A full disk (or a file size limit) can accept part of a write. For line- and cue-based formats
that leaves a torn last record, which strict readers reject; so a failed append cuts the file
back to where the record began before the error is raised.
"""

from __future__ import annotations

import contextlib
import os
from typing import IO

from streamer.outputs._errors import write_error


def append_whole(file: IO, text: str | bytes, kind: str, path: str) -> None:
    """Write `text` at the end of `file` in full, or leave the file as it was.

    Raises:
        SinkError: the write failed (the message names the fix when the disk is full).
    """
    file.flush()  # anything the file object holds (a header) goes first
    fd = file.fileno()
    start = os.lseek(fd, 0, os.SEEK_END)
    data = memoryview(text.encode("utf-8") if isinstance(text, str) else text)
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError as exc:
        with contextlib.suppress(OSError):  # truncating frees space, so it usually works
            os.ftruncate(fd, start)
        raise write_error(kind, path, exc) from exc
