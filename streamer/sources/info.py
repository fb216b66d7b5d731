"""What a video says about itself before decoding (`VideoInfo`): made by the sources that open
it (`Source.info`), read by the stream that times its outputs and by the taps that record it
(`streamer.sources.tap`)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

__all__ = ["VideoInfo"]


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a video says about itself before decoding.

    Attributes:
        width, height: frame size in pixels.
        fps: average frame rate, when the container knows it.
        time_base: time base of the video stream's timestamps.
        frames: frame count, from the container or estimated from duration × fps; None if unknown.
        duration: seconds, when known.
        start: media time of the first frame, seconds.
        origin: the media time a player shows as 0 (the container's start: hours into the day
            for a broadcast or camcorder MPEG-TS, 1.4 s for most others; 0 when the input
            starts at or before 0): a file's outputs count from it.
        codec: video codec name ("camera" for a local camera).
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
    origin: float = 0.0
