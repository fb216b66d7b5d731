"""Sources: turn an input spec into frames.

Files go through PyAV (`FileSource`). Live sources (cameras, RTSP, HTTP/HLS) arrive with the
live-sources work; `open_source` is the one front door either way.
"""

from __future__ import annotations

import os

from streamer.sources.file import FileSource, VideoInfo, probe_video

__all__ = ["FileSource", "VideoInfo", "open_source", "probe_video"]


def open_source(spec: str | os.PathLike[str], name: str | None = None) -> FileSource:
    """Open an input by its spec.

    Args:
        spec: a video file path.
        name: stream name; defaults to the file's stem.

    Raises:
        SourceNotFoundError, SourceOpenError: the input cannot be used (the message says why).
    """
    return FileSource(spec, name=name)
