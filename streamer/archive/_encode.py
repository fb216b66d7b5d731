"""Recording by encoding: a live stream whose packets cannot be copied into MP4 (an MJPEG camera
over HTTP) or that has none (a local camera: OpenCV gives pictures) is recorded by encoding its
decoded frames once, as the `-o` video is (`streamer.outputs.video.VideoWriter`: H.264 through
PyAV, x264 `veryfast` at CRF 20, BT.709 yuv420p), into the same fragmented-MP4 segments and the
same catalogue lines as copied packets, so `locate`, `prune`, clips and retention work alike.

- The source's decode thread hands each frame over (a reference, no copy: `FrameSink.frame`);
  the stream's writer thread converts and encodes it. When the encoder falls behind by
  `frames_allowed` frames (about two seconds of them, fewer when they are large), new frames are
  dropped and counted in the tap's `dropped`: the recording gets a gap (the frame before it
  lasts longer), and the stream never waits.
- Every segment has an encoder of its own, so it starts with a key frame and plays alone. A new
  one starts at the first frame `segment_s` after the segment's first, at every connection, and
  when the picture changes size.
- A key frame, and so a fragment, every `KEYFRAME_S`: a segment cut short by a crash plays up to
  its last fragment, a second or so short (plus the frames inside the encoder).
- Timestamps are the frames' own (`Frame.pts_raw`, rebased to start each segment at 0), which a
  live source keeps increasing across reconnects.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.archive._segment_log import SegmentLog
from streamer.errors import PixelsUnavailable, SinkError

if TYPE_CHECKING:
    from streamer.archive._remux import SegmentWriter
    from streamer.core.frame import Frame
    from streamer.sources.base import VideoInfo

__all__ = ["FrameItem", "FrameSegments", "FramesStart", "frames_allowed"]

KEYFRAME_S = 1.0  # a key frame (a fragment) this often: what a crash can cost
ENCODE_THREADS = 2  # x264 threads per recorded stream: enough for 1080p at camera rates
BACKLOG_S = 2.0  # frames that may wait for the encoder, in seconds of the stream ...
BACKLOG_BYTES = 128 * 2**20  # ... and in bytes of RGB pictures, whichever is fewer
_DEFAULT_FPS = 25.0  # when the source does not say


@dataclass(slots=True)
class FramesStart:
    """Queue item: a connection to be recorded by encoding its frames."""

    info: VideoInfo


@dataclass(slots=True)
class FrameItem:
    """Queue item: a frame to encode, and when it was captured on the wall clock."""

    frame: Frame
    wall: float


def frames_allowed(info: VideoInfo) -> int:
    """How many frames of a connection may wait for the encoder before new ones are dropped."""
    fps = float(info.fps) if info.fps else _DEFAULT_FPS
    by_time = math.ceil(BACKLOG_S * fps)
    by_bytes = BACKLOG_BYTES // max(1, info.width * info.height * 3)
    return max(4, min(by_time, by_bytes))


@dataclass(slots=True)
class _Encoding:
    """The segment being encoded."""

    video: Any  # a `VideoWriter`
    file: str
    path: Path
    first_raw: int  # the first frame's pts: the segment's 0
    start_media: float
    start_wall: float
    shape: tuple[int, int]
    time_base: Fraction
    frames: int = 0
    last: int | None = None  # the last frame's pts in the segment (ticks)
    step: int = 0  # the last frame's duration (ticks), for the segment's end


class FrameSegments:
    """The writer thread's side of encoded frames: segments opened, written and closed.

    Args:
        sink: the stream's sink (its recorder's settings, its tap state).
        log: the catalogue bookkeeping it shares with the copying side.
    """

    def __init__(self, sink: SegmentWriter, log: SegmentLog) -> None:
        self.sink = sink
        self.log = log
        self.segment_s = sink._recorder.segment_s
        self.info: VideoInfo | None = None
        self.wall0: float | None = None  # wall time of media time 0, the earliest estimate
        self.open: _Encoding | None = None

    def connect(self, info: VideoInfo) -> None:
        """A connection to record by encoding."""
        self.disconnect()
        self.log.connection((info.codec, info.width, info.height))
        self.info, self.wall0 = info, None
        self.sink._set(mode="encode")

    def disconnect(self) -> None:
        """The connection is over (or the run): finish the segment being written."""
        self._close(complete=True)
        self.info = None

    def frame(self, frame: Frame, wall: float) -> None:
        """Encode one frame, starting a segment where one is due."""
        if self.info is None or frame.pts_raw is None or frame.time_base is None:
            return  # after its connection ended; or a frame with no timestamp to keep
        self._time(frame, wall)
        try:
            image = frame.image
        except PixelsUnavailable:
            self.sink._add_dropped(1)
            return
        seg = self.open
        if seg is not None and self._cut_here(seg, frame, image):
            self._close(complete=True)
            seg = None
        if seg is None:
            if not self.log.may_open():
                self.sink._add_dropped(1)
                return
            seg = self._open(frame, image)
            if seg is None:
                return
        pts = frame.pts_raw - seg.first_raw
        try:
            seg.video.write(image, pts)
        except (SinkError, ValueError) as exc:
            self._failed(exc)
            return
        if seg.last is not None and pts > seg.last:
            seg.step = pts - seg.last
        seg.last = pts if seg.last is None else max(seg.last, pts)
        seg.frames += 1

    def _time(self, frame: Frame, wall: float) -> None:
        """Refine the wall time of media time 0: the earliest any frame allows (a frame is
        stamped when it is decoded, never before it was captured)."""
        at = wall - frame.pts
        if self.wall0 is None or at < self.wall0:
            self.wall0 = at
            if self.open is not None:
                self.open.start_wall = at + self.open.start_media

    def _cut_here(self, seg: _Encoding, frame: Frame, image: np.ndarray) -> bool:
        """Whether this frame starts a new segment: the segment is long enough, or the
        picture changed size or time base (a new encoder must take it)."""
        if image.shape[:2] != seg.shape or frame.time_base != seg.time_base:
            self.log.reason = "format"
            return True
        return frame.pts - seg.start_media >= self.segment_s

    def _open(self, frame: Frame, image: np.ndarray) -> _Encoding | None:
        # Imported here: only a stream recorded by encoding needs the video writer (and
        # OpenCV with it); a decode worker that only copies packets never loads it.
        from streamer.outputs.video import VideoWriter

        assert self.info is not None and self.wall0 is not None
        assert frame.pts_raw is not None and frame.time_base is not None
        start_wall = self.wall0 + frame.pts
        file, path = self.log.new_file(start_wall)
        height, width = image.shape[:2]
        fps = self.info.fps
        try:
            video = VideoWriter(
                path, width=width, height=height, time_base=frame.time_base, rate=fps,
                fragmented=True, threads=ENCODE_THREADS,
                keyframe_every=max(1, round(KEYFRAME_S * float(fps or _DEFAULT_FPS))),
            )  # fmt: skip
        except SinkError as exc:
            self.log.failed(exc, path)
            return None
        try:
            self.log.opened(
                file, start_wall, frame.pts, codec="h264", width=width, height=height,
                audio=None, encoded=self.info.codec,
            )  # fmt: skip
        except OSError as exc:
            _abandon(video, path)
            self.log.failed(exc, path)
            return None
        seg = _Encoding(video, file, path, frame.pts_raw, frame.pts, start_wall,
                        (height, width), frame.time_base)  # fmt: skip
        self.open = seg
        self.log.started(path, "encode")
        return seg

    def _close(self, *, complete: bool) -> None:
        seg, self.open = self.open, None
        if seg is None:
            return
        try:
            seg.video.close()
        except SinkError as exc:
            self.log.closed(seg.file, seg.path, seg.start_wall, _duration(seg, self.info),
                            seg.frames, complete=False)  # fmt: skip
            self.log.failed(exc, seg.path)
            return
        self.log.closed(seg.file, seg.path, seg.start_wall, _duration(seg, self.info),
                        seg.frames, complete=complete)  # fmt: skip

    def _failed(self, exc: BaseException) -> None:
        """Writing failed: end the segment (it plays to its last fragment), say why, drop
        frames until a retry."""
        seg, self.open = self.open, None
        if seg is None:
            return
        with contextlib.suppress(SinkError):
            seg.video.close()
        self.log.closed(seg.file, seg.path, seg.start_wall, _duration(seg, self.info),
                        seg.frames, complete=False)  # fmt: skip
        self.log.failed(exc, seg.path)


def _duration(seg: _Encoding, info: VideoInfo | None) -> float:
    """Seconds the segment covers: to its last frame's end (one frame step after it)."""
    if seg.last is None:
        return 0.0
    step = seg.step
    if not step:
        fps = (info.fps if info is not None else None) or Fraction(_DEFAULT_FPS)
        step = max(1, round(1 / (fps * seg.time_base)))
    return float((seg.last + step) * seg.time_base)


def _abandon(video: Any, path: Path) -> None:
    """Close and remove a segment file that never got its catalogue line."""
    with contextlib.suppress(SinkError):
        video.close()
    with contextlib.suppress(OSError):
        path.unlink()
