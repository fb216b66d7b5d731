"""Video files through PyAV, decoded in a thread, with backpressure.

Every frame is delivered (the file contract): when the pipeline is slower than decoding, the
decode thread waits for room in the outbox. A corrupt packet is skipped and counted; a file
that ends early (truncated) delivers what it decoded and reports where it stopped.

Decoding, for files and network streams alike (`DecodePlan`):

- Threads: `thread_type="AUTO"` (frame and slice threads); one stream takes every core, several
  share them (`decode_threads`).
- RGB only where it is used: the conversion from YUV costs about as much as decoding. A run
  that draws on its frames converts each one at full size; every run converts the frames it
  will analyse straight to the encoder's resize size (a fraction of the work, and the encoder
  skips its own resize); a run that draws nothing converts no other frame at all. The decoder
  knows which frames will be analysed by running the pipeline's own media-time sampler.
- One libswscale context per thread and purpose, reused frame after frame: PyAV's
  `frame.to_ndarray(format=...)` builds a new one for every frame, which costs more than the
  conversion itself at 720p.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import av.error
import numpy as np
from av.codec.context import Flags
from av.video.reformatter import VideoReformatter

from streamer.core.channel import Channel, ChannelClosed, DropPolicy
from streamer.core.frame import Frame, Picture
from streamer.core.sampler import Sampler
from streamer.errors import SourceDecodeError, SourceNotFoundError, SourceOpenError
from streamer.sources._handoff import Handoff, put_and_wait
from streamer.sources.hwaccel import check_stream, hwaccel_for
from streamer.sources.options import AnalysisSize, DecodePlan

if TYPE_CHECKING:
    from streamer.sources.decode_pool import DecodePool

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


#: The largest frame side accepted (8K is 7680x4320): a larger frame is refused at open rather
#: than decoded into hundreds of megabytes per frame.
MAX_SIDE = 8192


def _open_container(path: str, hwaccel: str | None = None) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise SourceNotFoundError(f"input {path!r} does not exist. Fix: check the path.")
    if os.path.isdir(path):
        raise SourceOpenError(f"input {path!r} is a folder, not a video file.")
    if os.path.getsize(path) == 0:
        raise SourceOpenError(f"input {path!r} is empty (0 bytes): not a video.")
    try:
        return av.open(path, metadata_errors="ignore", hwaccel=hwaccel_for(hwaccel))
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
    if not ctx:
        raise SourceOpenError(
            f"input {path!r}: its video is in a codec FFmpeg has no decoder for. Fix: convert "
            "it, e.g. `ffmpeg -i INPUT -c:v libx264 -c:a copy OUTPUT.mp4`."
        )
    if not ctx.width or not ctx.height:
        raise SourceOpenError(f"input {path!r}: video stream has no frame size; is it damaged?")
    if max(ctx.width, ctx.height) > MAX_SIDE:
        raise SourceOpenError(
            f"input {path!r} is {ctx.width}x{ctx.height}: larger than streamer takes (at most "
            f"{MAX_SIDE} pixels a side; one RGB frame of it is "
            f"{ctx.width * ctx.height * 3 / 2**20:.0f} MB). Fix: scale it down first, e.g. "
            "`ffmpeg -i INPUT -vf scale=3840:-2 OUTPUT.mp4`."
        )
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


_local = threading.local()
_SWS_INTERPOLATION = {"bicubic": "BICUBIC", "bilinear": "BILINEAR"}


def _reformatter(purpose: str) -> VideoReformatter:
    """This thread's libswscale context for `purpose` ("full" or "analysis"): one per size
    and thread, since a context is rebuilt whenever its sizes change and is not thread-safe."""
    cache = _local.__dict__.setdefault("reformatters", {})
    if purpose not in cache:
        cache[purpose] = VideoReformatter()
    return cache[purpose]


def to_rgb(decoded: av.VideoFrame) -> np.ndarray:
    """A decoded frame (YUV, NV12 from NVDEC, …) as H×W×3 uint8 RGB at its own size.

    One swscale thread: decode threads and other streams keep the other cores busy.
    """
    return _reformatter("full").reformat(decoded, format="rgb24", threads=1).to_ndarray()


def to_rgb_resized(decoded: av.VideoFrame, size: AnalysisSize) -> np.ndarray:
    """A decoded frame as RGB at the encoder's resize size, converted and scaled in one pass.

    libswscale's bicubic filter widens with the downscale factor (it antialiases, like PIL's),
    so the encoder's input matches what its reference transform makes of the full-size frame
    (cosine of the embeddings above 0.9998 on the sample clip).
    """
    height, width = size.shape(decoded.height, decoded.width)
    return (
        _reformatter("analysis")
        .reformat(
            decoded,
            width,
            height,
            format="rgb24",
            interpolation=_SWS_INTERPOLATION[size.interpolation],
            threads=1,
        )
        .to_ndarray()
    )


class FrameConverter:
    """Makes of each decoded frame the pictures a run's `DecodePlan` asks for.

    Args:
        plan: what the run needs.
        name: the stream's name (the sampler is keyed by it, as the pipeline's is).

    `picture(decoded, timeline)` is called in decode order with the frame's time on the
    pipeline's timeline (media time for files, the monotonic clock for live streams); the
    sampler then picks the same frames the pipeline will.
    """

    def __init__(self, plan: DecodePlan, name: str) -> None:
        self.plan = plan
        self.name = name
        predict = not plan.full_frames or plan.analysis is not None
        self._sampler = Sampler(plan.analyze_fps) if predict else None

    def picture(self, decoded: av.VideoFrame, timeline: float | None) -> np.ndarray | Picture:
        """A plain array when only the full-size picture is made, else a `Picture`; turned
        upright when the stream says it is shown rotated (phone videos)."""
        plan = self.plan
        analysed = (
            self._sampler is not None
            and timeline is not None
            and self._sampler.take(self.name, timeline)
        )
        turns = _quarter_turns(decoded)
        small = None
        if plan.analysis is not None and (analysed or plan.analysis_every_frame):
            small = _turn(to_rgb_resized(decoded, plan.analysis), turns)
        wants_full = plan.full_analysed or plan.analysis is None
        full = (
            _turn(to_rgb(decoded), turns) if plan.full_frames or (analysed and wants_full) else None
        )
        if small is None and full is not None:
            return full
        return Picture(full, small, None if full is not None else _Upright(decoded, turns))


class _Upright:
    """Makes the full-size upright picture of a decoded frame later (a picklable closure)."""

    __slots__ = ("decoded", "turns")

    def __init__(self, decoded: av.VideoFrame, turns: int) -> None:
        self.decoded, self.turns = decoded, turns

    def __call__(self) -> np.ndarray:
        return _turn(to_rgb(self.decoded), self.turns)


def _quarter_turns(decoded: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show the frame upright (its display matrix)."""
    try:
        rotation = decoded.rotation
    except (AttributeError, ValueError):
        return 0
    return round((rotation or 0) / 90) % 4


def _turn(image: np.ndarray, turns: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def configure_decoder(stream: av.VideoStream, plan: DecodePlan, *, live: bool, name: str) -> None:
    """Threads for one stream's decoder; call before the first packet is decoded.

    Live streams add the codec flag `low_delay`: FFmpeg then uses slice threads only, which
    hold back no frame (frame threads hold one per thread: latency).
    """
    stream.thread_type = "AUTO"
    if plan.threads:
        stream.codec_context.thread_count = plan.threads
    if live:
        stream.codec_context.flags |= Flags.low_delay
    check_stream(stream, plan.hwaccel, name)


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

    `plan` (a `DecodePlan`) says what to make of each frame (the pipeline sets it for the run);
    with `pool` set (a `DecodePool`), a decode worker process decodes the file instead of a
    thread of this process.
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
        self.plan = DecodePlan()
        self.pool: DecodePool | None = None

    async def run(self, out: Channel[Frame], stop: asyncio.Event) -> None:
        """Decode every frame into `out`, then close it. Returns early when `stop` is set."""
        if self.pool is not None:
            await self.pool.run(self, out, stop)
            return
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
                frame = frame.replace(captured=time.monotonic())
            if out.policy is DropPolicy.DROP_OLDEST:
                loop.call_soon_threadsafe(_offer, out, frame)
            elif put_and_wait(loop, out.put(frame), halt) is not Handoff.DONE:
                return

    def _frames(self) -> Iterator[Frame]:
        with _open_container(self.path, self.plan.hwaccel) as container:
            stream = container.streams.video[0]
            configure_decoder(stream, self.plan, live=False, name=self.name)
            convert = FrameConverter(self.plan, self.name)
            time_base = Fraction(stream.time_base)
            step = _frame_step(self.info, time_base)
            last_raw: int | None = None
            try:
                for packet in container.demux(stream):
                    for decoded in self._decode_packet(packet):
                        raw = decoded.pts if decoded.pts is not None else _next_pts(last_raw, step)
                        last_raw = raw
                        pts = float(raw * time_base)
                        yield Frame(
                            stream=self.name,
                            index=self.frames_read,
                            pts=pts,
                            captured=time.monotonic(),
                            image=convert.picture(decoded, pts),
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
