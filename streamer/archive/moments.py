"""Moments: the rows of the archive's index, and which analysed frames become one.

A `Moment` is what the index keeps of one analysed frame: where and when it was, its pooled
embedding, what the analysis said of it (tags, caption, alerts) and a small thumbnail.
`MomentPicker` decides, per stream, which analysed frames are worth a row: one at every scene
change and at least one every `index_every_s` seconds of the stream's time, so a still scene
costs a row per interval and a busy one a row per change.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from streamer.errors import ConfigError

__all__ = ["Moment", "MomentPicker", "Pick", "thumbnail_jpeg"]

THUMBNAIL_EDGE = 192  # long edge of a thumbnail, pixels: a search result grid's cell
THUMBNAIL_QUALITY = 75


@dataclass(frozen=True, eq=False)
class Moment:
    """One row of the archive's index.

    Attributes:
        stream: stream name.
        media_time: the frame's time in its stream, seconds (for a file, its position).
        wall_time: when it was seen, seconds since the epoch (UTC).
        embedding: the pooled image embedding, float32, L2-normalised (stored as float16).
        tags: (label, score) pairs, best first.
        caption: the caption that applied at this moment, or None.
        caption_source: where the caption came from ("llm", "tags"), or None.
        alerts: names of the alerts active at this moment.
        scene_score: how far the picture moved from the stream's previous row (cosine
            distance, 0..2; 0 for a stream's first row).
        thumbnail: a small JPEG of the frame, or None.
        media_path: a file input's own path (absolute); None for live streams, whose
            recording is found by (stream, wall_time).
        media_size: the file's size in bytes when indexed, to notice a changed file.
        media_mtime: the file's modification time when indexed.

    Raises:
        ConfigError: the embedding is not a 1-D array, the stream has no name, or a time is
            not a finite number.
    """

    stream: str
    media_time: float
    wall_time: float
    embedding: np.ndarray
    tags: tuple[tuple[str, float], ...] = ()
    caption: str | None = None
    caption_source: str | None = None
    alerts: tuple[str, ...] = ()
    scene_score: float = 0.0
    thumbnail: bytes | None = field(default=None, repr=False)
    media_path: str | None = None
    media_size: int | None = None
    media_mtime: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.embedding, np.ndarray) or self.embedding.ndim != 1:
            shape = getattr(self.embedding, "shape", type(self.embedding).__name__)
            raise ConfigError(f"`embedding` must be a 1-D numpy array, got {shape}")
        if not isinstance(self.stream, str) or not self.stream:
            raise ConfigError(f"`stream` must be a non-empty name, got {self.stream!r}")
        for name in ("media_time", "wall_time"):
            value = getattr(self, name)
            if not _number(value) or not math.isfinite(value):
                raise ConfigError(f"`{name}` must be a finite number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class Pick:
    """Why an analysed frame becomes a row.

    Attributes:
        reason: "first" (the stream's first row, or its time went back), "scene" (the picture
            moved at least the threshold from the previous row) or "interval" (the previous
            row is `index_every_s` old).
        scene_score: the cosine distance from the stream's previous row (0 for "first").
    """

    reason: str
    scene_score: float


@dataclass
class _Last:
    time: float
    embedding: np.ndarray


class MomentPicker:
    """Decides, per stream, which analysed frames become rows of the index.

    The scene score is measured from the embedding of the stream's previous *row*, not taken
    from the analysis (whose scene score measures from the last caption): a change then gives
    one row, not one per analysed frame until the captioner catches up.

    Args:
        index_every_s: longest gap, in the stream's time, between two rows of a stream.
        scene_threshold: cosine distance from the previous row that counts as a scene change.

    Raises:
        ConfigError: `index_every_s` is not a positive number, or `scene_threshold` is not in
            (0, 2].

    Example:
        >>> picker = MomentPicker(index_every_s=10, scene_threshold=0.3)
        >>> e = np.array([1.0, 0.0], np.float32)
        >>> picker.pick("cam", 0.0, e).reason, picker.pick("cam", 1.0, e)
        ('first', None)
    """

    def __init__(self, index_every_s: float, scene_threshold: float) -> None:
        if not _number(index_every_s) or not index_every_s > 0:
            raise ConfigError(f"`index_every_s` must be > 0 seconds, got {index_every_s!r}")
        if not _number(scene_threshold) or not 0 < scene_threshold <= 2:
            raise ConfigError(
                f"`scene_threshold` must be a cosine distance in (0, 2], got {scene_threshold!r}"
            )
        self.index_every_s = float(index_every_s)
        self.scene_threshold = float(scene_threshold)
        self._last: dict[str, _Last] = {}

    def pick(self, stream: str, media_time: float, embedding: np.ndarray) -> Pick | None:
        """Whether this analysed frame becomes a row (and then remember it as the last row).

        Args:
            stream: the stream's name.
            media_time: the frame's time in the stream, seconds.
            embedding: its L2-normalised embedding.

        Returns:
            A `Pick` when the frame is to be indexed, else None.
        """
        last = self._last.get(stream)
        if last is None or media_time < last.time:  # new, or its time restarted
            pick = Pick("first", 0.0)
        else:
            distance = max(0.0, float(1.0 - np.dot(embedding, last.embedding)))
            if distance >= self.scene_threshold:
                pick = Pick("scene", distance)
            elif media_time - last.time >= self.index_every_s:
                pick = Pick("interval", distance)
            else:
                return None
        self._last[stream] = _Last(media_time, np.asarray(embedding, np.float32))
        return pick

    def forget(self, stream: str) -> None:
        """Start the stream afresh: its next analysed frame is a row ("first")."""
        self._last.pop(stream, None)


def _number(value: object) -> bool:
    """Whether `value` is a real number (NumPy's too; not a bool, not text)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def thumbnail_jpeg(
    image: np.ndarray, long_edge: int = THUMBNAIL_EDGE, quality: int = THUMBNAIL_QUALITY
) -> bytes:
    """A small JPEG of an HxWx3 uint8 RGB frame, for a moment's thumbnail.

    Takes about a millisecond for a 720p frame; callers on the event loop run it in a thread
    (OpenCV releases the GIL).

    Raises:
        ConfigError: `image` is not an HxWx3 uint8 array.
    """
    import cv2  # here: `import streamer.archive` stays light

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        got = getattr(image, "shape", type(image).__name__)
        raise ConfigError(f"`image` must be an HxWx3 uint8 RGB array, got {got}")
    height, width = image.shape[:2]
    scale = long_edge / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:  # pragma: no cover - OpenCV fails here only when out of memory
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return buffer.tobytes()
