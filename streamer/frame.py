"""The records that flow between stages: frames in, annotations and captions out.

A `Frame` is one decoded picture of one stream. Annotations (zero-shot tags and the
scene-change score of an analysed frame) and captions are keyed by stream and media time,
so they can be attached to the frames that follow them.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes:
        stream: stream name (unique within a run).
        index: sequence number within the stream, from 0.
        pts: media time in seconds.
        captured: `time.monotonic()` when the frame left the decoder (for latency).
        image: H×W×3 uint8 RGB.
        pts_raw: presentation timestamp in `time_base` units, when the source has one; sinks use
            it to keep the original timing exactly.
        time_base: the source stream's time base.
    """

    stream: str
    index: int
    pts: float
    captured: float
    image: np.ndarray
    pts_raw: int | None = None
    time_base: Fraction | None = None


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
