"""PyAV helpers that file and network sources share: describing a container's video, turning
decoded frames into the RGB pictures a run's `DecodePlan` asks for, and setting up decoders.

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

import logging
import threading
from fractions import Fraction

import av
import av.error
import numpy as np
from av.codec.context import Flags
from av.stream import Discard
from av.video.reformatter import VideoReformatter

from streamer.core.frame import Picture
from streamer.core.sampler import Sampler
from streamer.errors import SourceOpenError
from streamer.sources.hwaccel import check_stream
from streamer.sources.info import VideoInfo
from streamer.sources.options import AnalysisSize, DecodePlan

__all__ = [
    "MAX_SIDE",
    "FrameConverter",
    "configure_decoder",
    "describe",
    "discard_others",
    "main_stream",
    "quarter_turns",
    "to_rgb",
    "to_rgb_resized",
    "turn",
]

log = logging.getLogger("streamer.sources")

#: The largest frame side accepted (8K is 7680x4320): a larger frame is refused at open rather
#: than decoded into hundreds of megabytes per frame.
MAX_SIDE = 8192


def main_stream(container: av.container.InputContainer, kind: str) -> av.stream.Stream | None:
    """The container's video (`kind` "video") or audio stream a player shows: FFmpeg's best
    (the one marked default; a cover picture only when there is no other), else the first;
    None: there is none."""
    streams = container.streams.video if kind == "video" else container.streams.audio
    return (container.streams.best(kind) or streams[0]) if streams else None


def discard_others(container: av.container.InputContainer, *read: av.stream.Stream | None) -> None:
    """Have the demuxer drop every stream but `read` before it fetches them: an HLS master
    playlist's other variants (and an audio rendition nobody records) are then not downloaded,
    where FFmpeg would fetch every variant's segments to hand over one."""
    kept = {stream.index for stream in read if stream is not None}
    for stream in container.streams:
        if stream.index not in kept:
            stream.discard = Discard.all


# AVFMT_NOTIMESTAMPS (libavformat/avformat.h): the format carries no timestamps (mpjpeg, raw
# streams); PyAV's names for the flags changed between versions, the value did not.
_NO_TIMESTAMPS = 0x0080


def describe(
    where: str, container: av.container.InputContainer, *, live: bool = False
) -> VideoInfo:
    """Check that an open container has a video stream this FFmpeg decodes, and describe it.

    Args:
        where: the input as messages name it (a path, or a URL without credentials).
        live: a camera's stream: a rate FFmpeg only assumes (25 fps for a container without
            timestamps that states none, as MJPEG over HTTP) is left unknown, not reported.

    Raises:
        SourceOpenError: no video stream, no decoder for its codec, no frame size, or frames
            larger than `MAX_SIDE`.
    """
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        raise SourceOpenError(
            f"input {where!r} has no video stream (it holds {', '.join(kinds)}). "
            "Fix: give a file with video."
        )
    stream = main_stream(container, "video")
    if stream.disposition & av.stream.Disposition.attached_pic:
        raise SourceOpenError(
            f"input {where!r} holds no video, only a still cover picture (album art) beside "
            "its audio. Fix: give a video file; to annotate the picture over the audio, make "
            "one first, e.g. `ffmpeg -loop 1 -i PICTURE -i INPUT -map 0:v -map 1:a -shortest "
            "-pix_fmt yuv420p OUTPUT.mp4`."
        )
    ctx = stream.codec_context
    if not ctx:
        raise SourceOpenError(
            f"input {where!r}: its video is in a codec FFmpeg has no decoder for. Fix: convert "
            "it, e.g. `ffmpeg -i INPUT -c:v libx264 -c:a copy OUTPUT.mp4`."
        )
    _check_frame_size(where, ctx.width, ctx.height)
    fps = _rate(container, stream, live)
    duration = _duration(container, stream)
    frames = stream.frames or None
    if frames is None and duration and fps:
        frames = round(duration * fps)
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    audio = main_stream(container, "audio")
    audio = audio.codec_context.name if audio is not None else None
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
        origin=max(0.0, (container.start_time or 0) / av.time_base),
    )


def _check_frame_size(where: str, width: int, height: int) -> None:
    if not width or not height:
        raise SourceOpenError(f"input {where!r}: video stream has no frame size; is it damaged?")
    if max(width, height) > MAX_SIDE:
        raise SourceOpenError(
            f"input {where!r} is {width}x{height}: larger than streamer takes (at most "
            f"{MAX_SIDE} pixels a side; one RGB frame of it is "
            f"{width * height * 3 / 2**20:.0f} MB). Fix: scale it down first, e.g. "
            "`ffmpeg -i INPUT -vf scale=3840:-2 OUTPUT.mp4`."
        )


def _rate(
    container: av.container.InputContainer, stream: av.VideoStream, live: bool
) -> Fraction | None:
    """The stream's frame rate: as stated, else FFmpeg's guess (from the timestamps); for a live
    stream without timestamps, only what its codec states."""
    if live and not stream.average_rate and container.format.flags & _NO_TIMESTAMPS:
        return stream.codec_context.framerate
    return stream.average_rate or stream.guessed_rate


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
        self._checked = False  # the first frame says what the video is

    def picture(self, decoded: av.VideoFrame, timeline: float | None) -> np.ndarray | Picture:
        """A plain array when only the full-size picture is made, else a `Picture`; turned
        upright when the stream says it is shown rotated (phone videos)."""
        plan = self.plan
        if not self._checked:
            self._checked = True
            _warn_unconverted(decoded, self.name)
        analysed = (
            self._sampler is not None
            and timeline is not None
            and self._sampler.take(self.name, timeline)
        )
        turns = quarter_turns(decoded)
        small = None
        if plan.analysis is not None and (analysed or plan.analysis_every_frame):
            small = turn(to_rgb_resized(decoded, plan.analysis), turns)
        wants_full = plan.full_analysed or plan.analysis is None
        full = (
            turn(to_rgb(decoded), turns) if plan.full_frames or (analysed and wants_full) else None
        )
        if small is None and full is not None:
            return full
        return Picture(full, small, None if full is not None else _Upright(decoded, turns))


#: transfer characteristics of high dynamic range video (FFmpeg's AVColorTransferCharacteristic)
_HDR = {16: "HDR10/PQ", 18: "HLG"}


def _warn_unconverted(decoded: av.VideoFrame, name: str) -> None:
    """Say what streamer reads as it is, though it is not made for that: interlaced frames
    (combed on motion), HDR (analysed and written as standard video: washed-out colours)."""
    if decoded.interlaced_frame:
        log.warning(
            "%s: the video is interlaced: it is analysed and written as decoded, with comb "
            "lines where it moves (deinterlace it first, e.g. `ffmpeg -i INPUT -vf bwdif -c:a "
            "copy OUTPUT.mp4`)", name,
        )  # fmt: skip
    hdr = _HDR.get(decoded.color_trc)
    if hdr is not None:
        log.warning(
            "%s: the video is %s high dynamic range: it is analysed and written as standard "
            "video (BT.709), so its colours look washed out (tone-map it to SDR first, e.g. "
            "with ffmpeg's zscale and tonemap filters)", name, hdr,
        )  # fmt: skip


class _Upright:
    """Makes the full-size upright picture of a decoded frame later (a picklable closure)."""

    __slots__ = ("decoded", "turns")

    def __init__(self, decoded: av.VideoFrame, turns: int) -> None:
        self.decoded, self.turns = decoded, turns

    def __call__(self) -> np.ndarray:
        return turn(to_rgb(self.decoded), self.turns)


def quarter_turns(decoded: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show the frame upright (its display matrix)."""
    try:
        rotation = decoded.rotation
    except (AttributeError, ValueError):
        return 0
    return round((rotation or 0) / 90) % 4


def turn(image: np.ndarray, turns: int) -> np.ndarray:
    """`image` turned `turns` quarter turns counter-clockwise (contiguous again)."""
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
