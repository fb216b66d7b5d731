"""The records that flow between stages: frames in, annotations and captions out.

A `Frame` is one decoded picture of one stream. Annotations (zero-shot tags and the
scene-change score of an analysed frame) and captions are keyed by stream and media time,
so they can be attached to the frames that follow them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import FrozenInstanceError, dataclass
from fractions import Fraction

import numpy as np

from streamer.errors import PixelsUnavailable

__all__ = ["Annotation", "Caption", "Frame", "Picture", "PixelsUnavailable", "Tag"]


class Picture:
    """The pixels of one decoded frame, made only at the sizes that are used.

    The decode thread fills in what the run needs (`streamer.sources.DecodePlan`): the
    full-size RGB picture when something draws on every frame, and the analysis-size picture
    (the encoder's input size) for the frames it expects to be analysed. Anything else is made
    on first use by `convert` (a closure over the decoded frame), on the thread that asks;
    a lock makes sure it is made once.

    Args:
        full: H×W×3 uint8 RGB at the frame's own size, or None.
        analysis: h×w×3 uint8 RGB at the encoder's resize size, or None.
        convert: makes the full-size picture later; None when it cannot be made (a frame from
            a decode worker carries only the pixels the worker sent).
    """

    __slots__ = ("_analysis", "_convert", "_full", "_lock")

    def __init__(
        self,
        full: np.ndarray | None = None,
        analysis: np.ndarray | None = None,
        convert: Callable[[], np.ndarray] | None = None,
    ) -> None:
        self._full = full
        self._analysis = analysis
        self._convert = None if full is not None else convert
        self._lock = threading.Lock() if self._convert is not None else None

    @property
    def analysis(self) -> np.ndarray | None:
        """The analysis-size picture, when the decoder made one."""
        return self._analysis

    @property
    def has_full(self) -> bool:
        """Whether the full-size picture is made already (no conversion on access)."""
        return self._full is not None

    def full(self) -> np.ndarray:
        """The full-size picture, converted now if it was not made yet.

        A picture that has no full-size pixels and no way to make them (from a decode worker,
        in a run that draws nothing) gives its analysis-size pixels: the one user that can
        meet it is a caption request for a frame the worker did not expect to be analysed.

        Raises:
            PixelsUnavailable: the picture has no pixels at all.
        """
        if self._full is not None:
            return self._full
        if self._lock is None:
            if self._analysis is not None:
                return self._analysis
            raise PixelsUnavailable(
                "this frame was decoded without its pixels (only its timestamp was needed); "
                "the decode plan must ask for full frames (DecodePlan.full_frames) when "
                "something reads them"
            )
        with self._lock:
            if self._full is None:
                assert self._convert is not None
                self._full = self._convert()
                self._convert = None  # lets the decoded frame go
        return self._full


class Frame:
    """One decoded frame (immutable; a plain class rather than a dataclass because `image` is
    made on first use when the decoder did not make it).

    Attributes:
        stream: stream name (unique within a run).
        index: sequence number within the stream, from 0.
        pts: media time in seconds.
        captured: `time.monotonic()` when the frame left the decoder (for latency).
        image: H×W×3 uint8 RGB at the frame's size. Built from an array, or from a `Picture`,
            which converts on first access when the decoder did not (a run that draws
            nothing converts only the frames it analyses).
        analysis_image: what the encoder should take: the picture already resized to the
            encoder's input size when the decoder made one, else `image`.
        pts_raw: presentation timestamp in `time_base` units, when the source has one; sinks use
            it to keep the original timing exactly.
        time_base: the source stream's time base.
    """

    __slots__ = ("_pixels", "captured", "index", "pts", "pts_raw", "stream", "time_base")

    stream: str
    index: int
    pts: float
    captured: float
    pts_raw: int | None
    time_base: Fraction | None

    def __init__(
        self,
        stream: str,
        index: int,
        pts: float,
        captured: float,
        image: np.ndarray | Picture,
        pts_raw: int | None = None,
        time_base: Fraction | None = None,
    ) -> None:
        init = object.__setattr__  # the one way in: assignment is refused afterwards
        init(self, "stream", stream)
        init(self, "index", index)
        init(self, "pts", pts)
        init(self, "captured", captured)
        init(self, "pts_raw", pts_raw)
        init(self, "time_base", time_base)
        init(self, "_pixels", image)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: a Frame is immutable")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: a Frame is immutable")

    @property
    def image(self) -> np.ndarray:
        pixels = self._pixels
        return pixels if isinstance(pixels, np.ndarray) else pixels.full()

    @property
    def analysis_image(self) -> np.ndarray:
        pixels = self._pixels
        if isinstance(pixels, Picture) and pixels.analysis is not None:
            return pixels.analysis
        return self.image

    @property
    def picture(self) -> Picture:
        """The frame's pixels as a `Picture` (a plain array is wrapped)."""
        pixels = self._pixels
        return pixels if isinstance(pixels, Picture) else Picture(full=pixels)

    def replace(self, **changes: object) -> Frame:
        """A copy with some attributes changed (`image=` replaces the pixels)."""
        fields = {
            "stream": self.stream, "index": self.index, "pts": self.pts,
            "captured": self.captured, "image": self._pixels, "pts_raw": self.pts_raw,
            "time_base": self.time_base,
        }  # fmt: skip
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"Frame has no attribute(s) {', '.join(sorted(unknown))}")
        return Frame(**{**fields, **changes})  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"Frame(stream={self.stream!r}, index={self.index}, pts={self.pts!r}, "
            f"captured={self.captured!r}, pts_raw={self.pts_raw!r}, time_base={self.time_base!r})"
        )


@dataclass(frozen=True, slots=True)
class Tag:
    """A zero-shot label and its probability among the vocabulary."""

    label: str
    score: float


@dataclass(frozen=True, slots=True)
class Annotation:
    """What the analyser found in one sampled frame.

    Attributes:
        stream: stream name.
        frame_index: index of the analysed frame.
        pts: media time of the analysed frame, seconds.
        tags: best labels first; empty when the encoder has no text tower.
        scene_score: cosine distance (0..2) of this frame's embedding to the embedding at the
            stream's last caption; 0 for the first analysed frame.
    """

    stream: str
    frame_index: int
    pts: float
    tags: tuple[Tag, ...]
    scene_score: float


@dataclass(frozen=True, slots=True)
class Caption:
    """A caption for a stream, shown from `pts` until the next caption.

    Attributes:
        stream: stream name.
        frame_index: the analysed frame it describes.
        pts: media time from which it applies, seconds.
        text: the caption text, one paragraph.
        source: where it came from: "tags" (built from zero-shot tags) or "llm".
    """

    stream: str
    frame_index: int
    pts: float
    text: str
    source: str
