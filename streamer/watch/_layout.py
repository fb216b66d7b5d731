"""What the window shows: a window per stream, or every stream as a labelled tile of one grid.

A layout turns a stream's drawn RGB frame into the BGR image of the window that shows it
(`put` returns that window's name); `images` holds every window's current image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from streamer.errors import ConfigError

__all__ = ["GRID_WINDOW", "MAX_VIEW", "GridLayout", "PerStream", "help_box", "outlined_text"]

MAX_VIEW = (1920, 1080)  # larger frames are scaled down to fit a screen
GRID_WINDOW = "streamer"


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled down (never up) to fit inside `size` (width, height), aspect kept."""
    height, width = image.shape[:2]
    scale = min(size[0] / width, size[1] / height)
    if scale >= 1:
        return image
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, new, interpolation=cv2.INTER_AREA)


def outlined_text(image: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5) -> None:
    """White text with a dark outline: readable on any picture."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, text, org, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, org, font, scale, (255, 255, 255), 1, cv2.LINE_AA)


class PerStream:
    """One window per stream, named "streamer: NAME"."""

    def __init__(self, streams: Sequence[str]) -> None:
        self.windows = {name: f"streamer: {name}" for name in streams}
        self.images: dict[str, np.ndarray] = {}

    def put(self, stream: str, rgb: np.ndarray) -> str:
        window = self.windows.setdefault(stream, f"streamer: {stream}")
        self.images[window] = cv2.cvtColor(_fit(rgb, MAX_VIEW), cv2.COLOR_RGB2BGR)
        return window


class GridLayout:
    """Every stream in one window: tiles in rows, each labelled with its stream's name.

    Streams fill the tiles in order, left to right and top to bottom. A tile is a strip with
    its stream's name over the picture, not on it: the overlay's top lines (an alert's banner,
    the tags) stay readable. The picture keeps its frame's aspect ratio (black bars); the strip
    says "waiting" until the stream's first frame.

    Args:
        streams: the stream names, in tile order.
        tile: one tile's (width, height), its name's strip included; default: a 16:9 picture
            at most 480 wide under the strip, the grid at most 1920 wide.
    """

    LABEL_H = 22

    def __init__(self, streams: Sequence[str], tile: tuple[int, int] | None = None) -> None:
        if not streams:
            raise ConfigError("a grid needs at least one stream")
        self.streams = list(streams)
        self.rows, self.cols = self.shape(len(self.streams))
        if tile is None:
            tall = (MAX_VIEW[1] // self.rows - self.LABEL_H) * 16 // 9  # the rows fit too
            width = min(480, MAX_VIEW[0] // self.cols, tall) // 2 * 2
            tile = (width, width * 9 // 16 // 2 * 2 + self.LABEL_H)
        self.tile = tile
        self.canvas = np.zeros((self.rows * tile[1], self.cols * tile[0], 3), np.uint8)
        self.images = {GRID_WINDOW: self.canvas}
        for index, name in enumerate(self.streams):
            self._label(index, f"{name}  (waiting)")

    @staticmethod
    def shape(count: int) -> tuple[int, int]:
        """(rows, columns) for `count` tiles: as square as possible, wider than tall."""
        cols = math.ceil(math.sqrt(count))
        return math.ceil(count / cols), cols

    def origin(self, index: int) -> tuple[int, int]:
        """The (x, y) of tile `index`'s top-left corner in the canvas."""
        row, col = divmod(index, self.cols)
        return col * self.tile[0], row * self.tile[1]

    def put(self, stream: str, rgb: np.ndarray) -> str:
        if stream not in self.streams:
            return GRID_WINDOW  # a stream the run did not announce: no tile for it
        index = self.streams.index(stream)
        x, y = self.origin(index)
        width, height = self.tile[0], self._picture_height
        cell = self.canvas[y + self.LABEL_H : y + self.tile[1], x : x + width]
        fitted = cv2.resize(
            rgb, self._inside(rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA
        )
        cell[:] = 0
        top, left = (height - fitted.shape[0]) // 2, (width - fitted.shape[1]) // 2
        cell[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted[..., ::-1]
        self._label(index, stream)
        return GRID_WINDOW

    @property
    def _picture_height(self) -> int:
        return self.tile[1] - self.LABEL_H  # under the name's strip

    def _inside(self, width: int, height: int) -> tuple[int, int]:
        scale = min(self.tile[0] / width, self._picture_height / height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def _label(self, index: int, text: str) -> None:
        x, y = self.origin(index)
        self.canvas[y : y + self.LABEL_H, x : x + self.tile[0]] = 0
        outlined_text(self.canvas, text, (x + 6, y + 16))


def help_box(image: np.ndarray, lines: Iterable[str]) -> None:
    """The key help in a dark box, centred."""
    lines = list(lines)
    line_h, width = 24, 360
    height = line_h * len(lines) + 12
    x = max(0, (image.shape[1] - width) // 2)
    y = max(0, (image.shape[0] - height) // 2)
    box = image[y : y + height, x : x + width]
    box[:] = box // 4
    for index, line in enumerate(lines):
        outlined_text(image, line, (x + 10, y + 24 + index * line_h))
