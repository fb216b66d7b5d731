"""Sources: turn an input spec into frames.

`open_source` is the one front door. It picks the source from the spec:

=====================================  ==================  ==========================
spec                                   source              default contract
=====================================  ==================  ==========================
`0`, `1`, … or `/dev/video0`           `CameraSource`      live
`rtsp://…`, `rtsps://…`                `NetworkSource`     live
`http(s)://…` (MJPEG, HLS `.m3u8`)     `NetworkSource`     live
`http(s)://…/clip.mp4` (a video file)  `NetworkSource`     file (nothing dropped)
a file path                            `FileSource`        file
=====================================  ==================  ==========================

Live sources (`LiveSource`: cameras and network streams) reconnect with backoff, keep their
state in a `SourceStatus`, and never show credentials (`redact`).
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from streamer.core.redact import redact
from streamer.core.retry import Backoff
from streamer.errors import SourceOpenError
from streamer.sources._live import LiveSource
from streamer.sources.camera import CameraSource
from streamer.sources.file import FileSource, VideoInfo, probe_video
from streamer.sources.network import NETWORK_SCHEMES, NetworkSource
from streamer.sources.options import SourceOptions
from streamer.sources.status import SourceStatus

__all__ = [
    "Backoff",
    "CameraSource",
    "FileSource",
    "LiveSource",
    "NetworkSource",
    "SourceOptions",
    "SourceStatus",
    "VideoInfo",
    "open_source",
    "probe_video",
    "redact",
    "split_stream_name",
]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_NAMED = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")


def split_stream_name(spec: str) -> tuple[str | None, str]:
    """`"door=rtsp://cam/1"` → `("door", "rtsp://cam/1")`; a spec without a name → `(None, spec)`.

    A path that exists as given is never split, so a file whose name contains "=" still opens.
    """
    match = _NAMED.match(spec)
    if match is None or os.path.exists(spec):
        return None, spec
    return match.group(1), match.group(2)


def open_source(
    spec: str | os.PathLike[str],
    name: str | None = None,
    *,
    live: bool | None = None,
    options: SourceOptions = SourceOptions(),  # noqa: B008 (frozen, so sharing is safe)
) -> FileSource | LiveSource:
    """Open an input by its spec. Network and camera sources connect when they run.

    Args:
        spec: a camera index (`"0"`) or device path (`/dev/video0`); an `rtsp://`, `rtsps://`,
            `http://` or `https://` URL; or a video file path.
        name: stream name; defaults to the file's stem, `cam0`, or the URL's host, port and
            path without credentials (`127.0.0.1_8554_cam1`).
        live: force the live contract (True) or the file contract (False: nothing dropped);
            None picks by kind (see the module table). Sets the source's `live` attribute,
            which the pipeline reads to choose its channel's drop policy.
        options: connection, timeout and reconnect settings of live sources.

    Raises:
        SourceNotFoundError, SourceOpenError: a file cannot be used, or the spec is a URL of
            an unsupported scheme (the message says why).

    Example:
        >>> open_source("rtsp://user:pw@127.0.0.1:8554/cam1").spec
        'rtsp://***@127.0.0.1:8554/cam1'
    """
    text = os.fspath(spec)
    if text.isdigit() or text.startswith("/dev/"):
        camera = CameraSource(int(text) if text.isdigit() else text, name, options=options)
        camera.live = camera.live if live is None else live
        return camera
    if _URL.match(text):
        scheme = urlsplit(text).scheme.lower()
        if scheme not in NETWORK_SCHEMES:
            raise SourceOpenError(
                f"{redact(text)!r}: {scheme}:// streams are not supported. Fix: use "
                f"{', '.join(s + '://' for s in NETWORK_SCHEMES)}, a camera index or a file."
            )
        return NetworkSource(text, name, live=live, options=options)
    source = FileSource(text, name=name)
    if live is not None:
        source.live = live
    return source
