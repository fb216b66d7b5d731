"""Errors raised by the pipeline.

::

    StreamerError
    ├── ConfigError (ValueError)          a bad option value; names the option and what is allowed
    ├── SourceError
    │   ├── SourceNotFoundError (FileNotFoundError)   the input path does not exist
    │   ├── SourceOpenError (OSError)     the input exists but cannot be opened as video
    │   └── SourceDecodeError             decoding stopped part-way (truncated or corrupt input)
    └── (sink errors live in `streamer.sinks.errors` and derive from SinkError)

Every message names the bad value and, where there is one, the fix.
"""

from __future__ import annotations


class StreamerError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ConfigError(StreamerError, ValueError):
    """An option has a value outside what it allows."""


class SourceError(StreamerError):
    """A source could not be opened or read."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The input path does not exist."""


class SourceOpenError(SourceError, OSError):
    """The input exists but is not a readable video."""


class SourceDecodeError(SourceError):
    """Decoding stopped before the end of the input.

    Attributes:
        frames: frames decoded before the failure.
        pts: media time of the last good frame, seconds (None if no frame decoded).
    """

    def __init__(self, message: str, *, frames: int, pts: float | None) -> None:
        super().__init__(message)
        self.frames = frames
        self.pts = pts
