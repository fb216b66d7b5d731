"""A benchmark clip of at least N seconds: the input's video stream looped, packets copied.

Looping whole copies keeps every packet a decoder needs (no cut in the middle of a group of
pictures) and costs no re-encoding; the timestamps of each copy are shifted by the length of
the clip. A shorter clip keeps a prefix of the packets in decode order, which stays decodable:
every packet's references come before it in that order. Audio is left out: the benchmarks time
video.
"""

from __future__ import annotations

import math
from pathlib import Path

import av

from streamer.errors import SourceOpenError

__all__ = ["clip_seconds", "looped_clip"]


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
