"""Clips: a span of a media file, or of a live stream's recordings, in a file of its own.

By stream copy where the key frames allow: a clip copies the packets from the key frame at or
before its start (at most `max_lead_s` before it), so it may start a little early, and says
where it really starts. Where no key frame fits (the span starts before the file's first key
frame, or the nearest one is too far back), the span is decoded and encoded again (H.264, as
the `-o` video is). Audio is copied along when MP4 holds its codec.

A clip of recordings (`clip_from_recordings`) joins the consecutive segments that hold the
span into one file with continuous timestamps: by copying when the segments share their
codec parameters, else by encoding them all.

Example:
    >>> cut_clip("talk.mp4", 61.0, 75.0, Path("clip.mp4")).copied  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from streamer.archive._clip_io import CopyOut, EncodeOut, Piece, open_media
from streamer.archive._segments import Segment, stream_segments
from streamer.errors import ConfigError, SourceNotFoundError

__all__ = ["ClipResult", "clip_from_recordings", "clip_of_hit", "cut_clip"]

#: By default a copied clip starts at most this long before the asked start.
MAX_LEAD_S = 4.0
_FURTHER_BACK_S = 10.0


@dataclass(frozen=True, slots=True)
class ClipResult:
    """A clip that was written.

    Attributes:
        path: the clip.
        start, end: the span it really covers, in the terms it was asked in (seconds of the
            file for `cut_clip`, wall-clock time for `clip_from_recordings`). A copied clip
            starts at a key frame, maybe a little before the asked start; either may end a
            little short when the media does.
        copied: stream copy (True) or encoded again (False).
        requested: the span that was asked for.
    """

    path: Path
    start: float
    end: float
    copied: bool
    requested: tuple[float, float]


def cut_clip(
    source: str | os.PathLike[str],
    start: float,
    end: float,
    out: Path,
    *,
    max_lead_s: float = MAX_LEAD_S,
) -> ClipResult:
    """Cut `start`..`end` (seconds of the file's own timeline) of one media file into `out`.

    Copies from the key frame at or before `start` when there is one at most `max_lead_s`
    before it; otherwise encodes the span again.

    Raises:
        ConfigError: the span is empty or not finite, or lies outside the media.
        SourceNotFoundError: the file does not exist.
        SourceOpenError: it is not a readable video.
    """
    _check_span(start, end)
    path = Path(source)
    with open_media(path) as container:
        video = container.streams.video[0]
        first, last = _extent(container, video)
        if end <= first or (last is not None and start >= last):
            limits = f"{first:.3f} to {last:.3f} s" if last is not None else f"from {first:.3f} s"
            raise ConfigError(
                f"{path}: the span {start:.3f}-{end:.3f} s is outside the media ({limits})"
            )
        key = _key_frame_before(container, video, start)
    copy = key is not None and start - key <= max_lead_s
    piece = Piece(path, key if copy and key is not None else start, end, key)
    written = _write([piece], out, copy)
    return ClipResult(Path(out), written[0], written[1], copy, (start, end))


def clip_from_recordings(
    root: Path,
    stream: str,
    start_wall: float,
    end_wall: float,
    out: Path,
    *,
    max_lead_s: float = MAX_LEAD_S,
) -> ClipResult:
    """Cut wall-clock `start_wall`..`end_wall` of a live stream's recordings into `out`,
    joining the consecutive segments that hold it.

    The segment being written can be cut up to its last fragment (a second or so behind).

    Raises:
        ConfigError: the span is empty or not finite, or no recording of `stream` holds any
            of it (the message says which spans are recorded).
        SourceNotFoundError: a segment the catalogue names is missing (the path is named).
    """
    _check_span(start_wall, end_wall)
    root = Path(root)
    held = [
        s
        for s in stream_segments(root, stream)
        if s.start_wall < end_wall and s.end_estimate(root) > start_wall
    ]
    if not held:
        raise ConfigError(
            f"no recording of stream {stream!r} holds {_when(start_wall)} to {_when(end_wall)}"
            f" ({_recorded(root, stream)})"
        )
    for segment in held:
        if not (root / segment.path).is_file():
            raise SourceNotFoundError(
                f"{root / segment.path}: a recording of {stream!r} in the catalogue is missing"
            )
    pieces = [
        Piece(root / s.path, max(0.0, start_wall - s.start_wall), end_wall - s.start_wall)
        for s in held
    ]
    with open_media(pieces[0].path) as container:
        video = container.streams.video[0]
        key = _key_frame_before(container, video, pieces[0].start)
    copy = key is not None and pieces[0].start - key <= max_lead_s and _same_parameters(pieces)
    if copy and key is not None:
        pieces[0] = Piece(pieces[0].path, key, pieces[0].end, key)
    else:
        pieces[0] = Piece(pieces[0].path, pieces[0].start, pieces[0].end, key)
    begin, finish = _write(pieces, out, copy)
    # The file's seconds back to the wall clock, by the first segment's start (and the
    # clip's length: later segments join on without their gaps).
    start = held[0].start_wall + begin
    return ClipResult(Path(out), start, start + (finish - begin), copy, (start_wall, end_wall))


def clip_of_hit(
    root: str | Path, hit: Any, out: str | Path, *, before: float = 5.0, after: float = 10.0
) -> ClipResult:
    """A clip around a search hit: from `before` seconds before its moment to `after` after.

    A file's moment is cut from the file (where it is now, when the search found it moved), in
    its media time; a live stream's from the archive's recordings, in wall time.

    Args:
        root: the archive directory.
        hit: a `streamer.archive.search.Hit`.
        out: the clip to write (its folder is made).

    Raises:
        ConfigError: the moment's media is missing, or the span is empty.
        SourceNotFoundError: the recordings do not hold the span.
    """
    moment, out = hit.moment, Path(out)
    if hit.media_state == "missing":
        raise ConfigError(f"no clip of {moment.stream} at {_when(moment.wall_time)}: its media "
                          "is missing (pruned, or the file is gone)")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    if moment.media_path is not None:
        source = hit.media or moment.media_path
        start = max(0.0, moment.media_time - before)
        return cut_clip(source, start, moment.media_time + after, out)
    start, end = moment.wall_time - before, moment.wall_time + after
    return clip_from_recordings(Path(root), moment.stream, start, end, out)


def _check_span(start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ConfigError(f"a clip's start and end must be finite numbers, got {start}, {end}")
    if end <= start:
        raise ConfigError(f"a clip must end after it starts, got {start:.3f} to {end:.3f}")


def _extent(
    container: av.container.InputContainer, video: av.VideoStream
) -> tuple[float, float | None]:
    """Where the video starts and ends (seconds), as the container says (end: None if it
    does not say, as for a recording cut short)."""
    first = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    if video.duration is not None:
        return first, first + float(video.duration * video.time_base)
    if container.duration is not None:
        return first, first + container.duration / av.time_base
    return first, None


def _key_frame_before(
    container: av.container.InputContainer, video: av.VideoStream, at: float
) -> float | None:
    """The time of the last key frame at or before `at` seconds, None when there is none.

    Seeks near `at` first (the container's index); where a seek lands in a file without one
    (MPEG-TS, a recording cut short) is rough, so then further back, then from the start.
    """
    tb = Fraction(video.time_base)
    for target in (at, at - _FURTHER_BACK_S, None):
        try:
            container.seek(0 if target is None else int(target / tb), stream=video, backward=True)
        except av.error.FFmpegError:
            continue
        found = _scan_keys(container, video, at)
        if found is not None:
            return found
    return None


def _scan_keys(
    container: av.container.InputContainer, video: av.VideoStream, at: float
) -> float | None:
    """The last key frame at or before `at`, reading on from where the container is."""
    found = None
    try:
        for packet in container.demux(video):
            if packet.is_corrupt:
                break
            if packet.pts is None or not packet.size:
                continue
            when = float(packet.pts * packet.time_base)
            if when > at:
                break
            if packet.is_keyframe:
                found = when
    except av.error.FFmpegError:
        pass  # a recording cut short ends in a torn fragment: what was read counts
    return found


def _same_parameters(pieces: list[Piece]) -> bool:
    """Whether the files' video (and audio) can be joined by copying: the same codec, size
    and codec parameters (a camera that came back reconfigured needs encoding)."""
    seen = None
    for piece in pieces:
        with open_media(piece.path) as container:
            streams = [container.streams.video[0], *container.streams.audio[:1]]
            key = tuple(
                (s.codec_context.name, getattr(s.codec_context, "width", 0),
                 getattr(s.codec_context, "height", 0), bytes(s.codec_context.extradata or b""))
                for s in streams
            )  # fmt: skip
        if seen is not None and key != seen:
            return False
        seen = key
    return True


def _write(pieces: list[Piece], out: Path, copy: bool) -> tuple[float, float]:
    """Write the pieces one after the other into `out`; return (start, end) of what was
    written, in the first piece's seconds."""
    with open_media(pieces[0].path) as container:
        writer = CopyOut(out, container) if copy else EncodeOut(out, container)
    try:
        for piece in pieces:
            writer.add(piece)
    except BaseException:
        writer.abandon()
        raise
    return writer.finish()


def _when(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))


def _recorded(root: Path, stream: str) -> str:
    found: list[Segment] = stream_segments(root, stream)
    if not found:
        return "it has no recordings"
    return f"recorded from {_when(found[0].start_wall)} to {_when(found[-1].end_estimate(root))}"
