"""Recording by encoding: a live stream whose packets cannot be copied into MP4 (an MJPEG camera
over HTTP) or that has none (a local camera: OpenCV gives pictures) is recorded by encoding its
decoded frames once, into the same fragmented-MP4 segments and the same catalogue lines as
copied packets, so `locate`, `prune`, clips and retention work alike.

- The encoding is the `-o` video's (`streamer.outputs.video.VideoWriter`'s defaults: H.264
  through PyAV, x264 `veryfast` at CRF 20, yuv420p tagged BT.709, odd sizes padded by their
  edge), with what a segment needs besides: no B-frames, so a segment's first frame is at its
  time 0 (a fragmented file has no edit list to hide their delay) and the encoder holds fewer
  frames back; a key frame every `KEYFRAME_S`; a fragment at least every second.
- The source's decode thread hands each frame over (a reference, no copy: `FrameSink.frame`);
  the stream's writer thread converts and encodes it. When the encoder falls behind by
  `frames_allowed` frames (about two seconds of them, fewer when they are large), new frames are
  dropped and counted in the tap's `dropped`: the recording gets a gap (the frame before it
  lasts longer), and the stream never waits.
- Every segment has an encoder of its own, so it starts with a key frame and plays alone. A new
  one starts at the first frame `segment_s` after the segment's first, at every connection, and
  when the picture changes size.
- A segment cut short by a crash plays up to its last fragment: a second or so short, plus the
  frames inside the encoder.
- Timestamps are the frames' own (`Frame.pts_raw`, rebased to start each segment at 0), which a
  live source keeps increasing across reconnects.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.archive._segment_log import SEGMENT_MP4, SegmentLog
from streamer.errors import PixelsUnavailable
from streamer.outputs.yuv import BT709, TV_RANGE, to_yuv420

if TYPE_CHECKING:
    from streamer.archive._sink_state import SinkState
    from streamer.core.frame import Frame
    from streamer.sources.info import VideoInfo

__all__ = ["FrameItem", "FrameSegments", "FramesStart", "frames_allowed"]

KEYFRAME_S = 2.0  # a key frame this often: where a clip can start without re-encoding
ENCODE_THREADS = 2  # x264 threads per recorded stream: enough for 1080p at camera rates
# As the `-o` video (`VideoWriter`'s defaults): codec, x264 options, colours (BT.709, TV range).
_CODEC, _X264 = "libx264", {"preset": "veryfast", "crf": "20"}
_WRITE_ERRORS = (OSError, ValueError, av.FFmpegError)
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

    video: _SegmentEncoder
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
        shared: the stream's sink's share: its recorder's settings, its tap state.
        log: the catalogue bookkeeping it shares with the copying side.
    """

    def __init__(self, shared: SinkState, log: SegmentLog) -> None:
        self.shared = shared
        self.log = log
        self.segment_s = shared.recorder.segment_s
        self.info: VideoInfo | None = None
        self.wall0: float | None = None  # wall time of media time 0, the earliest estimate
        self.open: _Encoding | None = None

    def connect(self, info: VideoInfo) -> None:
        """A connection to record by encoding."""
        self.disconnect()
        self.log.connection((info.codec, info.width, info.height))
        self.info, self.wall0 = info, None
        self.shared.set(mode="encode")

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
            self.shared.add_dropped(1)
            return
        seg = self.open
        if seg is not None and self._cut_here(seg, frame, image):
            self._close(complete=True)
            seg = None
        if seg is None:
            if not self.log.may_open():
                self.shared.add_dropped(1)
                return
            seg = self._open(frame, image)
            if seg is None:
                return
        pts = frame.pts_raw - seg.first_raw
        if seg.last is not None and pts <= seg.last:
            self.shared.add_dropped(1)  # not after the previous frame: it has no place
            return
        if seg.last is not None:
            seg.step = pts - seg.last
        try:
            seg.video.write(image, pts, seg.step or _step(self.info, seg.time_base))
        except _WRITE_ERRORS as exc:
            self._failed(exc)
            return
        seg.last = pts
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
        assert self.info is not None and self.wall0 is not None
        assert frame.pts_raw is not None and frame.time_base is not None
        start_wall = self.wall0 + frame.pts
        file, path = self.log.new_file(start_wall)
        height, width = image.shape[:2]
        try:
            video = _SegmentEncoder(path, width, height, frame.time_base, self.info.fps)
        except _WRITE_ERRORS as exc:
            self.log.failed(exc, path)
            return None
        try:
            self.log.opened(
                file, start_wall, frame.pts, codec="h264", width=video.width,
                height=video.height, audio=None, encoded=self.info.codec,
            )  # fmt: skip
        except OSError as exc:
            video.abandon()
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
        except _WRITE_ERRORS as exc:
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
        with contextlib.suppress(*_WRITE_ERRORS):
            seg.video.close()
        self.log.closed(seg.file, seg.path, seg.start_wall, _duration(seg, self.info),
                        seg.frames, complete=False)  # fmt: skip
        self.log.failed(exc, seg.path)


def _step(info: VideoInfo | None, time_base: Fraction) -> int:
    """One frame's duration in `time_base` ticks, at the source's nominal rate."""
    fps = (info.fps if info is not None else None) or Fraction(_DEFAULT_FPS)
    return max(1, round(1 / (fps * time_base)))


def _duration(seg: _Encoding, info: VideoInfo | None) -> float:
    """Seconds the segment covers: to its last frame's end (one frame step after it)."""
    if seg.last is None:
        return 0.0
    return float((seg.last + (seg.step or _step(info, seg.time_base))) * seg.time_base)


class _SegmentEncoder:
    """One segment's H.264 encoder and its fragmented-MP4 file (the writer thread's: blocking).

    Raises:
        OSError, ValueError, av.FFmpegError: the file cannot be made, or written.
    """

    def __init__(
        self, path: Path, width: int, height: int, time_base: Fraction, fps: Fraction | None
    ) -> None:
        self.path = path
        self.pad = (height % 2, width % 2)  # yuv420p wants even sizes: the edge is repeated
        self.width, self.height = width + self.pad[1], height + self.pad[0]
        self.time_base = time_base
        self.duration = 0  # the last frame's, in ticks: the encoder's last packets get it
        self.reformatter = VideoReformatter()  # this segment's colour conversion, frame after frame
        self.output = av.open(str(path), "w", format="mp4", container_options=SEGMENT_MP4)
        try:
            self.stream = self.output.add_stream(_CODEC, rate=fps)
            self.stream.width, self.stream.height = self.width, self.height
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = time_base  # the frames' own, so their times copy exactly
            ctx = self.stream.codec_context
            ctx.time_base = time_base
            ctx.thread_count = ENCODE_THREADS
            ctx.gop_size = max(1, round(KEYFRAME_S * float(fps or _DEFAULT_FPS)))
            ctx.max_b_frames = 0
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = BT709
            ctx.color_range = TV_RANGE
            self.stream.options = dict(_X264)
            self.output.start_encoding()
        except BaseException:
            self.output.close()
            raise

    def write(self, image: np.ndarray, pts: int, duration: int) -> None:
        """Encode one RGB picture shown from `pts` for `duration` ticks (about: the next
        frame's time decides)."""
        if any(self.pad):
            image = np.pad(image, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        frame = to_yuv420(image, self.reformatter)
        frame.pts, frame.time_base = pts, self.time_base
        self._mux(self.stream.encode(frame), duration)
        self.duration = duration

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            self._mux(self.stream.encode(None), self.duration)
        finally:
            self.output.close()

    def abandon(self) -> None:
        """Close and remove a file that never got its catalogue line."""
        with contextlib.suppress(*_WRITE_ERRORS):
            self.output.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _mux(self, packets: list[av.Packet], duration: int) -> None:
        for packet in packets:
            # Without B-frames the packets come in frame order; the muxer needs a duration
            # for a fragment's last frame, which the encoder does not know.
            packet.duration = duration
            self.output.mux(packet)
