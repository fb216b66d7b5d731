"""A benchmark clip of at least N seconds: the input's video stream looped, packets copied.

Looping whole copies keeps every packet a decoder needs (no cut in the middle of a group of
pictures) and costs no re-encoding; the timestamps of each copy are shifted by the length of
the clip. A shorter clip keeps a prefix of the packets in decode order, which stays decodable:
every packet's references come before it in that order. Audio is left out: the benchmarks time
video.

`synthetic_clip` writes a clip of any size instead: a moving pattern drawn with numpy, encoded
with the first H.264 encoder this FFmpeg build opens (many live cameras at a chosen resolution,
with no sample of that size at hand).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from streamer.errors import SourceOpenError

__all__ = ["H264_ENCODERS", "clip_seconds", "looped_clip", "synthetic_clip"]

#: tried in order; mpeg4 (MPEG-4 part 2) is the last resort of a build without H.264 encoders
H264_ENCODERS = ("libx264", "libopenh264", "h264_nvenc", "mpeg4")
# What each encoder is asked for: a camera's stream (no B-frames, a keyframe every 2 s) that
# costs a decoder what a camera's would (CABAC and the deblocking filter stay on).
_ENCODER_OPTIONS = {
    "libx264": {"preset": "veryfast", "bframes": "0"},
    "h264_nvenc": {"preset": "p4", "bf": "0"},
}


def clip_seconds(path: str | Path) -> float:
    """The video stream's duration in seconds (from its packets, not the header)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ends = [
            (p.pts + (p.duration or 0)) * p.time_base
            for p in container.demux(stream)
            if p.pts is not None
        ]
        starts = stream.start_time * stream.time_base if stream.start_time is not None else 0
    return float(max(ends) - starts) if ends else 0.0


def looped_clip(
    clip: str | Path,
    seconds: float,
    out: str | Path,
    loops: int | None = None,
    trim: float | None = None,
) -> tuple[Path, int]:
    """Write `clip`'s video looped to at least `seconds` long into `out`.

    Args:
        clip: any file PyAV reads.
        seconds: the shortest acceptable length; the clip is repeated whole.
        out: the file to write (MP4 or MKV by its suffix).
        loops: repeat exactly this many times instead (then `seconds` is ignored).
        trim: first keep only the packets decoded in the clip's first `trim` seconds (quick
            checks on a long clip).

    Returns:
        (`out`, copies of the clip in it).
    """
    with av.open(str(clip)) as source:
        stream = source.streams.video[0]
        packets = [p for p in source.demux(stream) if p.dts is not None and p.size]
        if trim is not None and packets:
            end = packets[0].dts + trim / stream.time_base
            packets = [p for p in packets if p.dts < end]
        if not packets:
            raise SourceOpenError(f"{clip}: no video packets")
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        length = float(span * stream.time_base)
        if loops is None:
            loops = max(1, math.ceil(seconds / length)) if length > 0 else 1
        out = Path(out)
        with av.open(str(out), "w") as sink:
            copy = sink.add_stream_from_template(stream)
            for loop in range(loops):
                for packet in packets:
                    new = av.Packet(bytes(packet))
                    new.pts = packet.pts + loop * span
                    new.dts = packet.dts + loop * span
                    new.duration = packet.duration
                    new.time_base = stream.time_base
                    new.is_keyframe = packet.is_keyframe
                    new.stream = copy
                    sink.mux(new)
    return out, loops


def synthetic_clip(
    out: str | Path, size: tuple[int, int], seconds: float, fps: int = 25,
    encoders: tuple[str, ...] = H264_ENCODERS,
) -> str:  # fmt: skip
    """Write `seconds` of a moving pattern at `size` (width, height) and `fps` into `out`.

    The picture moves every frame (a drifting gradient with a fixed grain, a bright square
    crossing it), so decoding it is real work: motion-compensated blocks with a residual, at
    about 4 Mbit/s for 1080p (scaled by area), as a camera sends.

    Returns:
        The encoder used: the first of `encoders` that this FFmpeg build has and can open
        (`h264_nvenc` needs a GPU; the others need nothing).

    Raises:
        SourceOpenError: none of `encoders` opens here; the message says why each did not.
    """
    width, height = size
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise SourceOpenError(f"a synthetic clip needs an even size of at least 16x16, got {size}")
    codec = _first_encoder(encoders, width, height, fps)
    with av.open(str(out), "w") as sink:
        stream = sink.add_stream(codec, rate=fps, options=_ENCODER_OPTIONS.get(codec, {}))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = max(300_000, int(4_000_000 * width * height / (1920 * 1080)))
        stream.codec_context.gop_size = 2 * fps
        for index, planes in enumerate(_pattern(width, height, round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            sink.mux(stream.encode(frame))
        sink.mux(stream.encode(None))
    return codec


def _first_encoder(encoders: tuple[str, ...], width: int, height: int, fps: int) -> str:
    problems = []
    for name in encoders:
        if name not in av.codecs_available:
            problems.append(f"{name}: not in this build")
            continue
        context = av.CodecContext.create(name, "w")
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"
        context.time_base, context.framerate = Fraction(1, fps), Fraction(fps)
        try:
            context.open()
        except av.error.FFmpegError as exc:  # e.g. h264_nvenc without a GPU: the next one
            problems.append(f"{name}: {exc}")
            continue
        return name
    raise SourceOpenError(f"no video encoder opens here ({'; '.join(problems)})")


def _pattern(width: int, height: int, count: int):
    """`count` frames of yuv420p planes, stacked as `VideoFrame.from_ndarray` takes them."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.arange(2 * width), np.arange(height))
    wave = 60 * np.sin(x / 37.0) + 40 * np.cos(y / 23.0 + x / 91.0)
    luma = np.clip(128 + wave + rng.normal(0, 10, wave.shape), 16, 235).astype(np.uint8)
    cx, cy = np.meshgrid(np.arange(width), np.arange(height // 2))
    chroma = (128 + 40 * np.sin(cx / 29.0) * np.cos(cy / 17.0)).astype(np.uint8)
    side = max(8, height // 6) // 2 * 2
    area = width * height
    for index in range(count):
        flat = np.empty(area * 3 // 2, np.uint8)  # Y, then U and V at half width and height
        luma_plane = flat[:area].reshape(height, width)
        shift = (3 * index) % width
        luma_plane[:] = luma[:, shift : shift + width]
        left, top = (7 * index) % max(1, width - side), (height - side) // 2
        luma_plane[top : top + side, left : left + side] = 235
        u = np.roll(chroma[:, : width // 2], -index, axis=1)  # they drift the other way
        v = np.roll(chroma[:, width // 2 :], index, axis=0)
        flat[area : area * 5 // 4] = u.reshape(-1)
        flat[area * 5 // 4 :] = v.reshape(-1)
        yield flat.reshape(height * 3 // 2, width)
