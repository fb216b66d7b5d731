"""Sources: turn an input spec into frames.

`open_source` is the one front door. It picks the source from the spec:

=====================================  ==================  ==========================
spec                                   source              default contract
=====================================  ==================  ==========================
`0`, `1`, … or `/dev/video0`           `CameraSource`      live
`rtsp://…`, `rtsps://…`                `NetworkSource`     live
`http(s)://…` (MJPEG, live HLS)        `NetworkSource`     live
`http(s)://…/clip.mp4` (a video file)  `NetworkSource`     file (nothing dropped)
`http(s)://…/vod.m3u8` (finished HLS)  `NetworkSource`     file (nothing dropped)
a file path                            `FileSource`        file
=====================================  ==================  ==========================

An HLS playlist is finished when it ends with `#EXT-X-ENDLIST` (video on demand): making its
source fetches the playlist once to tell (`playlist.py`), so it blocks for up to the open
timeout.

Every source is a `Source` (`base.py`): made with its final name and contract, it says what
it is doing in a `SourceStatus`. Live sources (`LiveSource`: cameras and network streams)
reconnect with backoff and never show credentials (`redact`). A run names its inputs with
`stream_names` (`names.py`), and `decoding` (`pool/`) decides whether each source runs in
this process or in a decode worker process. A network source can also hand its compressed
packets to a recorder as they arrive (`tap.py`: `run(..., tap=)`; `Source.tappable`).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import av

from streamer.core.redact import redact
from streamer.core.retry import Backoff
from streamer.errors import SourceOpenError
from streamer.sources._live import LiveSource
from streamer.sources.base import Source
from streamer.sources.camera import CameraSource
from streamer.sources.file import FileSource, probe_video
from streamer.sources.info import VideoInfo
from streamer.sources.names import files_only, spec_kind, split_stream_name, stream_names
from streamer.sources.network import NETWORK_SCHEMES, NetworkSource
from streamer.sources.options import SourceOptions
from streamer.sources.pool import SourceRunner, decoding
from streamer.sources.status import SourceStatus
from streamer.sources.tap import PacketSink, PacketTap, TapConnection, TapState

__all__ = [
    "Backoff",
    "CameraSource",
    "FileSource",
    "LiveSource",
    "NetworkSource",
    "PacketSink",
    "PacketTap",
    "Source",
    "SourceOptions",
    "SourceRunner",
    "SourceStatus",
    "TapConnection",
    "TapState",
    "VideoInfo",
    "decoding",
    "files_only",
    "open_source",
    "probe_video",
    "redact",
    "split_stream_name",
    "stream_names",
]


def open_source(
    spec: str | os.PathLike[str],
    name: str | None = None,
    *,
    live: bool | None = None,
    options: SourceOptions = SourceOptions(),  # noqa: B008 (frozen, so sharing is safe)
) -> FileSource | NetworkSource | CameraSource:
    """Open an input by its spec. Network and camera sources connect when they run (an HLS
    playlist URL is fetched once here, to tell a finished playlist from a live one).

    Args:
        spec: a camera index (`"0"`) or device path (`/dev/video0`); an `rtsp://`, `rtsps://`,
            `http://` or `https://` URL; or a video file path.
        name: stream name; defaults to the file's stem, `cam0`, or the URL's host, port and
            path without credentials (`127.0.0.1_8554_cam1`). A run names all its inputs at
            once with `stream_names`, which makes them unique.
        live: force the live contract (True: a file then plays at its own frame rate) or the
            file contract (False: nothing dropped); None picks by kind (see the module table).
            The pipeline reads the source's `live` to choose its channel's drop policy.
        options: connection, timeout and reconnect settings of live sources.

    Raises:
        SourceNotFoundError, SourceOpenError: a file cannot be used, or the spec is a URL of
            an unsupported scheme (the message says why).

    Example:
        >>> open_source("rtsp://user:pw@127.0.0.1:8554/cam1").spec
        'rtsp://***@127.0.0.1:8554/cam1'
    """
    text = os.fspath(spec)
    kind = spec_kind(text)
    _refuse_dash(text, kind)
    if kind == "camera":
        device = int(text) if text.isdigit() else text
        return CameraSource(device, name, live=True if live is None else live, options=options)
    if kind == "url":
        scheme = urlsplit(text).scheme.lower()
        if scheme not in NETWORK_SCHEMES:
            raise SourceOpenError(
                f"{redact(text)!r}: {scheme}:// streams are not supported. Fix: use "
                f"{', '.join(s + '://' for s in NETWORK_SCHEMES)}, a camera index or a file."
            )
        return NetworkSource(text, name, live=live, options=options)
    return FileSource(text, name, live=bool(live))


def _refuse_dash(text: str, kind: str) -> None:
    """A DASH manifest (`.mpd`) is refused at once when this FFmpeg cannot read one (PyAV's
    wheels have no DASH demuxer): a URL would otherwise be retried forever as a stream that
    sends "no readable video"."""
    path = urlsplit(text).path if kind == "url" else text
    if not path.lower().endswith(".mpd") or _has_demuxer("dash"):
        return
    raise SourceOpenError(
        f"{redact(text)!r} is a DASH manifest (.mpd): the FFmpeg that streamer uses (PyAV's) "
        "cannot read DASH. Fix: use the stream's HLS (.m3u8) URL if it has one, or fetch it "
        "into a file first, e.g. `ffmpeg -i MANIFEST.mpd -c copy OUTPUT.mkv`."
    )


def _has_demuxer(name: str) -> bool:
    try:
        av.format.ContainerFormat(name, "r")
    except ValueError:
        return False
    return True
