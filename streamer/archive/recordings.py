"""Recordings of live streams: the camera's own packets in fragmented-MP4 segments, a catalogue
of them per stream, and retention.

::

    DIR/recordings/<stream>/
      20250101T120000.000Z.mp4     segments: each starts with a key frame, plays alone, and
      20250101T120100.040Z.mp4     still plays when cut short by a crash (fragmented MP4)
      segments.jsonl               the catalogue (append-only; see `streamer.archive._segments`)

A run records a live stream by giving its source a `Recorder` (a `PacketTap`):
`source.run(out, stop, plan, tap=Recorder(DIR, name))`, or the same through a
`SourceRunner`. A network stream's packets are copied, never decoded or encoded; the decode
thread only queues them, a writer thread per stream writes (`streamer.archive._remux`). What
cannot be copied (an MJPEG camera over HTTP) and what has no packets (a local camera) is
recorded by encoding its decoded frames once, as the `-o` video is, into segments of the same
kind (`streamer.archive._encode`). A source that runs in a decode worker records there, and
its `Recorder` here follows the state.

Reading: `segments` lists them, `locate` finds the one holding a wall-clock time, `prune`
removes the oldest (never the one being written) by age and by total size.

Example:
    >>> recorder = Recorder("archive", "door", segment_s=60)  # doctest: +SKIP
    >>> await source.run(out, stop, tap=recorder)
    >>> segment, offset = locate(Path("archive"), "door", time.time() - 30)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from streamer.archive._remux import SegmentWriter
from streamer.archive._segments import (
    Segment,
    rewrite_without,
    stream_folder,
    stream_names,
    stream_segments,
)
from streamer.errors import ConfigError
from streamer.sources.tap import TapState

__all__ = ["Recorder", "Segment", "holding", "locate", "prune", "segments", "starts_at"]

log = logging.getLogger("streamer.archive")


class Recorder:
    """The packet tap that records one live stream into `DIR/recordings/<stream>/`.

    Give it to the stream's source (`run(..., tap=recorder)`); it is picklable, so it goes
    with the source into a decode worker. Its sink is both a `PacketSink` and a `FrameSink`:
    packets are copied when MP4 can hold their codec, else the frames are encoded. Its `state`
    (a `TapState`) says what it is doing: "waiting" for a key frame, "recording" (`current`
    file; `mode` "copy" or "encode"), "declined" (the codec cannot be copied, and the source
    did not hand over its frames), "failed" (`detail`: e.g. the disk is full; it retries later,
    and the stream goes on), "closed".

    Args:
        root: the archive directory.
        stream: the stream's name (its folder's name).
        segment_s: a new segment starts at the first key frame after this many seconds.
        audio: copy the stream's audio too, when MP4 can hold its codec.

    Raises:
        ConfigError: `segment_s` is not a positive number, or `stream` cannot name a folder.
    """

    def __init__(
        self, root: str | os.PathLike[str], stream: str, *, segment_s: float = 60.0,
        audio: bool = True,
    ) -> None:  # fmt: skip
        if (
            isinstance(segment_s, bool)
            or not isinstance(segment_s, int | float)
            or not (math.isfinite(segment_s) and segment_s > 0)
        ):
            raise ConfigError(
                f"`segment_s` must be a positive number of seconds, got {segment_s!r}"
            )
        self.root = Path(root)
        self.stream = stream
        self.folder = stream_folder(self.root, stream)
        self.segment_s = float(segment_s)
        self.audio = audio
        self.state = TapState()

    def sink(self) -> SegmentWriter:
        """The writer, where the source runs: it takes the stream's writer lock and closes
        what a dead writer left open (see `PacketTap.sink`)."""
        return SegmentWriter(self)

    def follow(self, state: TapState) -> None:
        """Take the state of this recorder's copy in a decode worker."""
        self.state = state

    def __repr__(self) -> str:
        return f"Recorder({str(self.root)!r}, {self.stream!r}, segment_s={self.segment_s:g})"


def segments(root: Path, stream: str | None = None) -> list[Segment]:
    """The segments in `root`'s catalogues (of one stream, or of all), oldest first.

    Raises:
        ConfigError: `stream` cannot be a stream's name.
    """
    names = [stream] if stream is not None else stream_names(Path(root))
    found = [s for name in names for s in stream_segments(Path(root), name)]
    return sorted(found, key=lambda s: (s.start_wall, s.stream))


#: Seconds before a segment's start that still count as its start (`holding`): about one
#: keyframe interval of a camera.
START_GRACE_S = 2.0
_JOINS = ("start", "reconnect", "format")  # reasons a segment begins a (new) connection


def holding(found: list[Segment], root: Path, wall: float) -> tuple[Segment, float] | None:
    """The segment of `found` (one stream's, oldest first) that holds wall-clock time `wall`,
    and the offset into it; None when none does (see `locate`).

    A time up to `START_GRACE_S` before the start of a segment that began a connection, that
    no earlier segment holds, is that segment's start: a recording begins at a keyframe, and
    a stream joined mid-picture-group decodes (and analyses) frames before its first one.
    """
    later: Segment | None = None
    for segment in reversed(found):
        if segment.start_wall <= wall:
            if wall <= segment.end_estimate(root):
                return segment, wall - segment.start_wall
            break
        later = segment
    return (later, 0.0) if later is not None and starts_at(later, wall) else None


def starts_at(segment: Segment, wall: float) -> bool:
    """Whether `wall`, before `segment` and held by no earlier one, counts as its start (see
    `holding`)."""
    return segment.reason in _JOINS and 0.0 <= segment.start_wall - wall <= START_GRACE_S


def locate(root: Path, stream: str, wall: float) -> tuple[Segment, float] | None:
    """The segment of `stream` holding wall-clock time `wall`, and the offset in seconds into
    it; None when no segment holds it (before the first, in a gap, after the last).

    A segment cut short by a crash holds up to its file's last write; the one being written,
    up to now.
    """
    root = Path(root)
    return holding(stream_segments(root, stream), root, wall)


def prune(
    root: Path,
    *,
    retain_s: float | None,
    max_bytes: int | None,
    keep: Callable[[Segment], bool] = lambda s: False,
    now: float | None = None,
) -> list[Segment]:
    """Delete whole segments, oldest first, never one being written nor one `keep` keeps:
    those ending more than `retain_s` seconds before `now` (default: the present), then more
    until all segments together take at most `max_bytes`. Each stream's catalogue is
    rewritten (atomically) before its files go, so a crash in between leaves a file the
    catalogue does not name, never the other way.

    Returns:
        The removed segments, oldest first.

    Raises:
        ConfigError: `retain_s` or `max_bytes` is negative.
    """
    for name, value in (("retain_s", retain_s), ("max_bytes", max_bytes)):
        if value is not None and not value >= 0:
            raise ConfigError(f"`{name}` must be ≥ 0 or None, got {value!r}")
    root = Path(root)
    every = segments(root)
    candidates = [s for s in every if not s.writing and not keep(s)]
    doomed: list[Segment] = []
    if retain_s is not None:
        horizon = (time.time() if now is None else now) - retain_s
        doomed = [s for s in candidates if s.end_estimate(root) < horizon]
    if max_bytes is not None:
        total = sum(s.bytes for s in every) - sum(s.bytes for s in doomed)
        for segment in candidates:
            if total <= max_bytes:
                break
            if segment not in doomed:
                doomed.append(segment)
                total -= segment.bytes
    doomed.sort(key=lambda s: (s.start_wall, s.stream))
    _remove(root, doomed)
    return doomed


def _remove(root: Path, doomed: list[Segment]) -> None:
    by_stream: dict[str, list[Segment]] = {}
    for segment in doomed:
        by_stream.setdefault(segment.stream, []).append(segment)
    for stream, gone in by_stream.items():
        folder = stream_folder(root, stream)
        rewrite_without(folder, {Path(s.path).name for s in gone})
        for segment in gone:
            with contextlib.suppress(FileNotFoundError):
                (root / segment.path).unlink()
        log.info("%s: removed %d old segments", stream, len(gone))
