"""Stream names: what each input of a run is called in frames, outputs, logs and the viewer.

`stream_names` is the one place a run's names are decided: the pipeline opens its sources with
them and the CLI checks `--alert STREAM=QUERY` against them. A name is the user's (`NAME=SPEC`)
or made from the spec (a camera's `cam0`, a URL's host, port and path without credentials, a
file's stem); a name given twice gets `-2`, `-3`, … in input order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "FILE_SUFFIXES",
    "camera_stream_name",
    "default_stream_name",
    "files_only",
    "spec_kind",
    "split_stream_name",
    "stream_names",
    "url_stream_name",
]

#: Names of video files (on a web server: read as files; in a folder: the videos it holds).
FILE_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".flv", ".mpg", ".mpeg")

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_NAMED = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9.\-]+")


def spec_kind(spec: str) -> Literal["camera", "url", "file"]:
    """What an input spec names: a camera (`0`, `/dev/video0`), a URL (`scheme://…`, any
    scheme: `open_source` refuses the ones it cannot read) or a file path."""
    if spec.isdigit() or spec.startswith("/dev/"):
        return "camera"
    if _URL.match(spec):
        return "url"
    return "file"


def files_only(specs: Iterable[str], live: bool | None) -> bool:
    """Whether every input is a file read at its own pace (the file contract, `live` not
    True): a run of them can put its model on what the video threads leave idle
    (`streamer.analysis.loading.start_local_encoder_service`)."""
    return not live and all(spec_kind(split_stream_name(s)[1]) == "file" for s in specs)


def split_stream_name(spec: str) -> tuple[str | None, str]:
    """`"door=rtsp://cam/1"` → `("door", "rtsp://cam/1")`; a spec without a name → `(None, spec)`.

    A path that exists as given is never split, so a file whose name contains "=" still opens.
    """
    match = _NAMED.match(spec)
    if match is None or os.path.exists(spec):
        return None, spec
    return match.group(1), match.group(2)


def camera_stream_name(device: int | str) -> str:
    """`cam0` for index 0 or `/dev/video0`; other device paths by their sanitised file name."""
    if isinstance(device, int):
        return f"cam{device}"
    match = re.fullmatch(r"/dev/video(\d+)", device)
    if match:
        return f"cam{match.group(1)}"
    return _UNSAFE.sub("_", os.path.basename(device)).strip("_.") or "camera"


def url_stream_name(url: str) -> str:
    """A stream name for a URL: host, port and path, credentials and query left out.

    Example:
        >>> url_stream_name("rtsp://admin:pw@127.0.0.1:8554/cam1")
        '127.0.0.1_8554_cam1'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = str(parts.port) if parts.port else ""
    except ValueError:  # a malformed port: the source refuses the URL when it is opened
        port = ""
    pieces = [host, port, parts.path]
    name = _UNSAFE.sub("_", "_".join(p for p in pieces if p))
    return name.strip("_.") or "stream"


def default_stream_name(spec: str) -> str:
    """The name of an input given without `NAME=`: `cam0`, `127.0.0.1_8554_cam1`, `clip`."""
    kind = spec_kind(spec)
    if kind == "camera":
        return camera_stream_name(int(spec) if spec.isdigit() else spec)
    if kind == "url":
        return url_stream_name(spec)
    # As a given NAME= may be: a name goes into output paths, MQTT topics ('+' and '#' are
    # wildcards there) and URLs; "front door #1.mp4" is the stream front_door_1.
    return _UNSAFE.sub("_", Path(spec).stem).strip("_.") or "clip"


def stream_names(inputs: Iterable[str | os.PathLike[str]]) -> list[tuple[str, str]]:
    """Every input of a run with its final stream name, in input order.

    Args:
        inputs: the run's input specs, each optionally `NAME=SPEC`.

    Returns:
        `(name, spec)` per input, the `NAME=` taken off the spec. Names are unique: a name
        already taken gets `-2`, `-3`, … (the first keeps it).

    Example:
        >>> stream_names(["0", "door=rtsp://u:pw@cam/1", "0"])
        [('cam0', '0'), ('door', 'rtsp://u:pw@cam/1'), ('cam0-2', '0')]
    """
    named = []
    for given in inputs:
        name, spec = split_stream_name(os.fspath(given))
        named.append((name or default_stream_name(spec), spec))
    taken: set[str] = set()
    unique = []
    for name, spec in named:
        final, count = name, 1
        while final in taken:  # also past a name like "a-2" that was given as such
            count += 1
            final = f"{name}-{count}"
        taken.add(final)
        unique.append((final, spec))
    return unique
