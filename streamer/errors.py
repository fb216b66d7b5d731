"""Errors raised by the pipeline.

::

    StreamerError
    ├── ConfigError (ValueError)          a bad option value; names the option and what is allowed
    ├── SourceError
    │   ├── SourceNotFoundError (FileNotFoundError)   the input path or URL does not exist (404)
    │   ├── SourceOpenError (OSError)     the input exists but cannot be opened as video
    │   │   └── SourceAuthError (PermissionError)     the server refused the credentials (401/403)
    │   ├── SourceDecodeError             decoding stopped part-way (truncated or corrupt input)
    │   ├── SourceUnavailableError (ConnectionError)  a live source is unreachable or dropped
    │   └── SourceTimeout (TimeoutError)  a live source did not answer or stalled
    └── (sink errors live in `streamer.outputs.errors` and derive from SinkError)

Live sources retry `SourceUnavailableError` and `SourceTimeout` with backoff; the others are
permanent when they happen at the first open (the source is then marked failed).

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
    """The input path does not exist, or the server has no stream at that URL."""


class SourceOpenError(SourceError, OSError):
    """The input exists but is not a readable video."""


class SourceAuthError(SourceOpenError, PermissionError):
    """The server refused the request: missing or wrong credentials, or no permission."""


class SourceUnavailableError(SourceError, ConnectionError):
    """A live source cannot be reached, or it dropped the connection; worth retrying."""


class SourceTimeout(SourceError, TimeoutError):
    """A live source did not answer within the open timeout, or sent no frame within the read
    timeout; worth retrying."""


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
