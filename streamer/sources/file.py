"""Video files through PyAV, decoded in a thread, with backpressure.

Every frame is delivered (the file contract): when the pipeline is slower than decoding, the
decode thread waits for room in the outbox. A corrupt packet is skipped and counted; a file
that ends early (truncated) delivers what it decoded and reports where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.error

from streamer.channel import Channel, ChannelClosed, DropPolicy
from streamer.errors import SourceDecodeError, SourceNotFoundError, SourceOpenError
from streamer.frame import Frame
from streamer.sources._handoff import Handoff, put_and_wait

log = logging.getLogger("streamer.sources")


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a video file says about itself before decoding.

    Attributes:
        width, height: frame size in pixels.
        fps: average frame rate, when the container knows it.
        time_base: time base of the video stream's timestamps.
        frames: frame count, from the container or estimated from duration × fps; None if unknown.
        duration: seconds, when known.
        start: media time of the first frame, seconds.
        codec: video codec name.
        audio: name of the first audio codec, None when there is no audio.
    """

    width: int
    height: int
    fps: Fraction | None
    time_base: Fraction
    frames: int | None
    duration: float | None
    start: float
    codec: str
    audio: str | None


def _open_container(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise SourceNotFoundError(f"input {path!r} does not exist. Fix: check the path.")
    if os.path.isdir(path):
        raise SourceOpenError(f"input {path!r} is a folder, not a video file.")
    if os.path.getsize(path) == 0:
        raise SourceOpenError(f"input {path!r} is empty (0 bytes): not a video.")
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise SourceOpenError(
            f"input {path!r} is not a readable video ({exc}). Fix: give a video file "
            "(MP4, MKV, MOV, WebM, AVI, …) that ffprobe can read."
        ) from exc


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open a file, check that it has a decodable video stream and describe it.

    Raises:
        SourceNotFoundError: the path does not exist.
        SourceOpenError: the file is empty, not a media file, has no video stream, or its codec
            cannot be decoded.
    """
    path = os.fspath(path)
    with _open_container(path) as container:
        return _describe(path, container)


def _describe(path: str, container: av.container.InputContainer) -> VideoInfo:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise SourceOpenError(
            f"input {path!r} has no video stream (it holds {', '.join(kinds)}). "
            "Fix: give a file with video."
        )
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if not ctx or not ctx.width or not ctx.height:
        raise SourceOpenError(f"input {path!r}: video stream has no frame size; is it damaged?")
    fps = stream.average_rate or stream.guessed_rate
    duration = _duration(container, stream)
    frames = stream.frames or None
    if frames is None and duration and fps:
        frames = round(duration * fps)
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    return VideoInfo(
        width=ctx.width,
        height=ctx.height,
        fps=Fraction(fps) if fps else None,
        time_base=Fraction(stream.time_base),
        frames=frames,
        duration=duration,
        start=start,
        codec=ctx.name,
        audio=audio,
    )


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


class FileSource:
    """A video file as a stream of `Frame`s.

    Args:
        path: the video file.
        name: stream name for the frames.

    Set `paced` to play the file at its own frame rate, as a camera would deliver it (for live
    runs on recorded video); then frames are offered without waiting, and a full outbox with the
    drop-oldest policy drops instead of slowing the file down.

    After `run` returns, `ended` says whether the source got to the end of the file (rather than
    being stopped), `incomplete` holds a `SourceDecodeError` when decoding stopped before
    the end of the file, and `corrupt_packets` counts packets that failed to decode and were
    skipped. `live` is False: the pipeline gives a file the file contract unless told otherwise
    (`open_source(..., live=True)`).
    """

    live: bool = False

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = os.fspath(path)
        self.info = probe_video(self.path)
        self.name = name or Path(self.path).stem
        self.frames_read = 0
        self.corrupt_packets = 0
        self.incomplete: SourceDecodeError | None = None
        self.ended = False
        self.live = False
        self.paced = False

    async def run(self, out: Channel[Frame], stop: asyncio.Event) -> None:
        """Decode every frame into `out`, then close it. Returns early when `stop` is set."""
        loop = asyncio.get_running_loop()
        halt = threading.Event()
        try:
            await asyncio.to_thread(self._decode_into, out, loop, halt, stop)
        finally:
            halt.set()
            await out.close()

    def _decode_into(
        self, out: Channel[Frame], loop: asyncio.AbstractEventLoop, halt: threading.Event,
        stop: asyncio.Event,
    ) -> None:  # fmt: skip
        clock: tuple[float, float] | None = None  # (monotonic, pts) of the first paced frame
        for frame in self._frames():
            if halt.is_set() or stop.is_set():
                return
            if self.paced:
                clock = clock or (time.monotonic(), frame.pts)
                if halt.wait(max(0.0, clock[0] + frame.pts - clock[1] - time.monotonic())):
                    return
                frame = replace(frame, captured=time.monotonic())
            if out.policy is DropPolicy.DROP_OLDEST:
                loop.call_soon_threadsafe(_offer, out, frame)
            elif put_and_wait(loop, out.put(frame), halt) is not Handoff.DONE:
                return

    def _frames(self) -> Iterator[Frame]:
        with _open_container(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame+slice threads: several times faster decode
            time_base = Fraction(stream.time_base)
            step = _frame_step(self.info, time_base)
            last_raw: int | None = None
            try:
                for packet in container.demux(stream):
                    for decoded in self._decode_packet(packet):
                        raw = decoded.pts if decoded.pts is not None else _next_pts(last_raw, step)
                        last_raw = raw
                        yield Frame(
                            stream=self.name,
                            index=self.frames_read,
                            pts=float(raw * time_base),
                            captured=time.monotonic(),
                            image=decoded.to_ndarray(format="rgb24"),
                            pts_raw=raw,
                            time_base=time_base,
                        )
                        self.frames_read += 1
            except av.error.FFmpegError as exc:
                self._stopped_early(f"reading stopped: {exc}", last_raw, time_base)
                self.ended = True
                return
        self._check_complete(last_raw, time_base)
        self.ended = True

    def _decode_packet(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            return packet.decode()
        except av.error.InvalidDataError as exc:
            self.corrupt_packets += 1
            log.warning("%s: skipped a packet that does not decode (%s)", self.name, exc)
            return []

    def _check_complete(self, last_raw: int | None, time_base: Fraction) -> None:
        expected = self.info.frames
        # Containers round their frame counts and durations; two frames short is still whole.
        if expected and self.frames_read < expected - 2:
            self._stopped_early(
                f"the file ends early: {self.frames_read} of {expected} frames decoded "
                "(truncated or damaged file)",
                last_raw,
                time_base,
            )

    def _stopped_early(self, why: str, last_raw: int | None, time_base: Fraction) -> None:
        pts = float(last_raw * time_base) if last_raw is not None else None
        where = f"after frame {self.frames_read}" + (f" (t={pts:.3f} s)" if pts is not None else "")
        self.incomplete = SourceDecodeError(
            f"{self.path}: {why}; stopped {where}", frames=self.frames_read, pts=pts
        )
        log.error("%s", self.incomplete)


def _offer(out: Channel[Frame], frame: Frame) -> None:
    """Put without waiting (on the loop thread); a closed outbox means nobody is reading."""
    with contextlib.suppress(ChannelClosed):
        out.put_nowait(frame)


def _frame_step(info: VideoInfo, time_base: Fraction) -> int:
    if info.fps:
        return max(1, round(1 / (info.fps * time_base)))
    return 1


def _next_pts(last: int | None, step: int) -> int:
    return 0 if last is None else last + step
