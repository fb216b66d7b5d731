"""Overlay: draws the caption box, top tags and HUD onto every outgoing frame.

Drawing runs in a worker thread once per delivered frame, so it is kept cheap: only the small
regions under the boxes are blended (never the whole frame), and everything that depends only
on the frame size (font scale, line height, padding) or on the text (word wrapping, rendered
text) is cached. The same inputs always give the same pixels.

ASCII text is drawn with OpenCV's Hershey font; a box with any other text (accents, CJK,
symbols) is drawn with a system font through Pillow's FreeType, rendered once per text and
blended on every frame (`streamer.outputs._text`, fonts: `streamer.outputs._fonts`). A
character no font has becomes its ASCII look-alike or "?", never nothing.

::

    ┌────────────────────────────────────────────┐
    │ RANDOM WEIGHTS: tags and captions are …    │  warning banner (red), when set
    │ ALERT a person at the door 0.31            │  alert banner (red), while one is recent
    │ dog 0.62                        12.3 fps   │  top tags (left), HUD lines (right)
    │ grass 0.21                   frame 120/500 │
    │                                            │
    │ [from tags] 4.2 s ago                      │  caption box: source and age,
    │ a dog running on the grass near a ...      │  then the word-wrapped caption
    └────────────────────────────────────────────┘
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from streamer.core.frame import Annotation, Caption
from streamer.errors import ConfigError
from streamer.outputs._text import Hershey, Pen, ascii_text, fit, pen_for, wrap

__all__ = ["Hud", "Overlay", "OverlayStyle", "ascii_text"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Glyph height of FONT_HERSHEY_SIMPLEX at fontScale 1, in pixels (from cv2.getTextSize).
_FONT_PX = 22.0
_MIN_SCALE = 0.3  # below this Hershey glyphs are unreadable smudges

# Colours are RGB: frames travel as RGB, and OpenCV does not care about channel order.
_WHITE = (255, 255, 255)
_GREY = (190, 190, 190)
_YELLOW = (255, 214, 64)
_CYAN = (120, 220, 255)
_BLACK = (0, 0, 0)
_RED = (200, 24, 24)
_WARNING_OPACITY = 0.85  # the warning must stay legible even when boxes are faint
_SOURCE_LABELS = {"tags": "[from tags]", "llm": "[LLM]"}
_Row = tuple[str, tuple[int, int, int], Pen]  # text, colour, the pen that measures and draws it


@dataclass(frozen=True)
class Hud:
    """Heads-up display text for the top-right corner.

    Attributes:
        lines: short status lines, e.g. ("12.3 fps", "frame 120/500").
        warning: shown as a red banner across the top when set, e.g. "RANDOM WEIGHTS: tags
            and captions are meaningless".
        status: one highlighted line under `lines`, e.g. "LLM: offline, retrying".
        alert: shown as a red banner under the warning while an alert is recent, e.g.
            "ALERT a person at the door 0.31".
    """

    lines: tuple[str, ...] = ()
    warning: str | None = None
    status: str | None = None
    alert: str | None = None


@dataclass(frozen=True)
class OverlayStyle:
    """How the overlay looks; validated on construction.

    Attributes:
        font_scale: text height as a fraction of the frame's shorter side, its height unless
            the video is portrait (0.03 is about 22 px of text on a 720p frame, and on a
            720×1280 phone video). Text never gets smaller than OpenCV can draw legibly.
        max_caption_lines: caption lines shown; longer captions end in "...".
        box_opacity: opacity of the dark boxes behind text, 0 (none) to 1 (solid).
        top_k_tags: tags shown top-left, best first; 0 hides them.
    """

    font_scale: float = 0.03
    max_caption_lines: int = 3
    box_opacity: float = 0.6
    top_k_tags: int = 5

    def __post_init__(self) -> None:
        _check_number("font_scale", self.font_scale, "in (0, 0.25]", lambda v: 0 < v <= 0.25)
        _check_int("max_caption_lines", self.max_caption_lines, minimum=1)
        _check_number("box_opacity", self.box_opacity, "in [0, 1]", lambda v: 0 <= v <= 1)
        _check_int("top_k_tags", self.top_k_tags, minimum=0)


def _check_number(name: str, value: object, expected: str, ok: Callable[[float], bool]) -> None:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not (valid and math.isfinite(value) and ok(value)):  # type: ignore[arg-type]
        raise ConfigError(f"`{name}` must be a number {expected}, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= minimum):
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class _Layout:
    """Pixel metrics for one frame size and style (computed once, then cached)."""

    width: int
    height: int
    pen: Hershey  # for ASCII text; other text gets a FreeType pen of the same cap height
    ascent: int  # from the top of a line to its baseline
    line_h: int  # distance between baselines
    pad: int  # inside a box, around the text
    margin: int  # between a box and the frame edge


@functools.lru_cache(maxsize=16)
def _layout(width: int, height: int, style: OverlayStyle) -> _Layout:
    # The shorter side: a portrait frame sized by its height would get text as large as a
    # landscape frame twice its width, and its tags and HUD, side by side, would not fit.
    scale = max(_MIN_SCALE, style.font_scale * min(width, height) / _FONT_PX)
    thickness = max(1, int(scale * 1.5))
    (_, text_h), baseline = cv2.getTextSize("Ag", _FONT, scale, thickness)
    pad = max(2, text_h // 3)
    return _Layout(
        width=width,
        height=height,
        pen=Hershey(scale, thickness),
        ascent=text_h,
        line_h=text_h + baseline + max(1, text_h // 4),
        pad=pad,
        margin=max(1, pad // 2),
    )


class Overlay:
    """Draws captions, tags and the HUD onto RGB frames.

    Args:
        style: sizes and limits; the default suits 360p to 4K.

    Example:
        >>> overlay = Overlay()
        >>> image = np.zeros((720, 1280, 3), np.uint8)
        >>> out = overlay.draw(image, annotation=None, caption=None, now_pts=0.0,
        ...                    hud=Hud(lines=("25.0 fps",)))
        >>> out is image
        True
    """

    def __init__(self, style: OverlayStyle | None = None) -> None:
        self.style = style if style is not None else OverlayStyle()

    def draw(
        self,
        image: np.ndarray,
        *,
        annotation: Annotation | None,
        caption: Caption | None,
        now_pts: float,
        hud: Hud,
    ) -> np.ndarray:
        """Draw onto `image` (H×W×3 uint8 RGB) in place and return it.

        A read-only `image` is copied first, and the copy is returned.

        Args:
            image: the frame; modified in place.
            annotation: the stream's latest analysis; its top tags are drawn top-left.
            caption: the caption in force; drawn at the bottom with its source and age.
            now_pts: media time of this frame, for the caption's age.
            hud: text for the top-right corner, the warning banner and the alert banner.

        Raises:
            ValueError: `image` is not an H×W×3 uint8 array.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"`image` must be an H×W×3 uint8 array, got {image.dtype} {image.shape}"
            )
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            return image
        if not image.flags.writeable:
            # Decoders may hand out read-only buffers; draw on a copy rather than fail.
            image = image.copy()
        lay = _layout(width, height, self.style)
        banner = self._warning_rows(lay, hud.warning) if hud.warning else []
        top = _block_height(lay, len(banner)) if banner else 0
        alert_y = top
        alert = _line(lay, hud.alert, _text_width(lay), _WHITE) if hud.alert else None
        if alert:
            top += _block_height(lay, 1)
        if annotation is not None and self.style.top_k_tags:
            self._draw_tags(image, lay, annotation, top)
        self._draw_hud(image, lay, hud, top)
        if caption is not None:
            self._draw_caption(image, lay, caption, now_pts)
        # Banners are drawn last, so nothing covers them even on frames too small for everything.
        opacity = max(self.style.box_opacity, _WARNING_OPACITY)
        if banner:
            _draw_block(image, lay, banner, 0, 0, lay.width, (_RED, opacity))
        if alert:
            _draw_block(image, lay, [alert], 0, alert_y, lay.width, (_RED, opacity))
        return image

    def _warning_rows(self, lay: _Layout, warning: str) -> list[_Row]:
        """The banner's lines: at most two, fewer when the frame is tiny."""
        max_lines = max(1, min(2, _lines_in_half(lay)))
        pen = _pen(lay, warning)
        lines = wrap(pen.prepare(warning), _text_width(lay), pen, max_lines)
        return [(line, _WHITE, pen) for line in lines]

    def _draw_tags(self, image: np.ndarray, lay: _Layout, annotation: Annotation, top: int) -> None:
        max_w = _half_width(lay)
        tags = annotation.tags[: self.style.top_k_tags]
        # One pen for the whole box, so its rows share a typeface.
        pen = _pen(lay, *(tag.label for tag in tags))
        labels = [f"{pen.prepare(tag.label)} {tag.score:.2f}" for tag in tags]
        rows = [(fit(label, max_w, pen), _WHITE, pen) for label in labels]
        if rows:
            width = _rows_width(rows, lay)
            _draw_block(image, lay, rows, lay.margin, top + lay.margin, width, self._fill)

    def _draw_hud(self, image: np.ndarray, lay: _Layout, hud: Hud, top: int) -> None:
        max_w = _half_width(lay)
        rows = [_line(lay, line, max_w, _WHITE) for line in hud.lines]
        if hud.status:
            rows.append(_line(lay, hud.status, max_w, _YELLOW))
        rows = [row for row in rows if row[0]]
        if rows:
            width = _rows_width(rows, lay)
            x = lay.width - lay.margin - width
            _draw_block(image, lay, rows, x, top + lay.margin, width, self._fill, align_right=True)

    def _draw_caption(self, image: np.ndarray, lay: _Layout, caption: Caption, now: float) -> None:
        text_w = _text_width(lay)
        # On small frames the box may cover at most half the frame (header line included).
        max_lines = max(1, min(self.style.max_caption_lines, _lines_in_half(lay) - 1))
        pen = _pen(lay, caption.text)
        lines = wrap(pen.prepare(caption.text), text_w, pen, max_lines)
        if not lines:
            return
        label = _SOURCE_LABELS.get(caption.source) or f"[{caption.source}]"
        accent = _YELLOW if caption.source == "tags" else _CYAN
        header = _line(lay, f"{label} {_age(now - caption.pts)}", text_w, accent)
        rows = [header] + [(line, _WHITE, pen) for line in lines]
        y = max(0, lay.height - lay.margin - _block_height(lay, len(rows)))
        width = lay.width - 2 * lay.margin
        _draw_block(image, lay, rows, lay.margin, y, width, self._fill)

    @property
    def _fill(self) -> tuple[tuple[int, int, int], float]:
        return _BLACK, self.style.box_opacity


def _draw_block(
    image: np.ndarray,
    lay: _Layout,
    rows: list[_Row],
    x: int,
    y: int,
    width: int,
    fill: tuple[tuple[int, int, int], float],
    *,
    align_right: bool = False,
) -> None:
    """Shade a box at (x, y) of `width` with `fill` (colour, opacity) and draw `rows` of
    (text, colour, pen) in it."""
    box_h = _block_height(lay, len(rows))
    _shade(image, x, y, x + width, y + box_h, *fill)
    baseline = y + lay.pad + lay.ascent
    for text, colour, pen in rows:
        tx = x + lay.pad
        if align_right:
            tx = x + width - lay.pad - pen.measure(text)
        pen.draw(image, text, tx, baseline, colour)
        baseline += lay.line_h


def _block_height(lay: _Layout, rows: int) -> int:
    return rows * lay.line_h + 2 * lay.pad


def _lines_in_half(lay: _Layout) -> int:
    """How many text lines fit in a box half the frame's height."""
    return (lay.height // 2 - 2 * lay.pad) // lay.line_h


def _shade(
    image: np.ndarray,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    colour: tuple[int, int, int],
    alpha: float,
) -> None:
    """Blend `colour` over the rectangle, clipped to the image; only that region is touched."""
    h, w = image.shape[:2]
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if alpha <= 0 or x1 <= x0 or y1 <= y0:
        return
    roi = image[y0:y1, x0:x1]
    roi[...] = cv2.addWeighted(roi, 1.0 - alpha, _solid(y1 - y0, x1 - x0, colour), alpha, 0.0)


@functools.lru_cache(maxsize=32)
def _solid(h: int, w: int, colour: tuple[int, int, int]) -> np.ndarray:
    # Box sizes repeat frame after frame, so the plain-colour operand of the blend is reused.
    block = np.empty((h, w, 3), np.uint8)
    block[...] = colour
    block.flags.writeable = False
    return block


def _text_width(lay: _Layout) -> int:
    """Room for text in a full-width box."""
    return max(1, lay.width - 2 * (lay.margin + lay.pad))


def _half_width(lay: _Layout) -> int:
    """Room for text in a corner box, which must leave the other corner free."""
    return max(1, lay.width // 2 - 2 * (lay.margin + lay.pad))


def _rows_width(rows: list[_Row], lay: _Layout) -> int:
    return max(pen.measure(text) for text, _, pen in rows) + 2 * lay.pad


def _pen(lay: _Layout, *texts: str) -> Pen:
    """The pen for a box holding `texts` (Hershey for ASCII, else FreeType at the same size)."""
    return pen_for(lay.pen, *texts)


def _line(lay: _Layout, text: str, max_w: int, colour: tuple[int, int, int]) -> _Row:
    """A row of its own: `text` with its own pen, cut to `max_w` pixels."""
    pen = _pen(lay, text)
    return fit(pen.prepare(text), max_w, pen), colour, pen


def _age(seconds: float) -> str:
    """How long ago a caption was made, e.g. "4.2 s ago", "3 min 5 s ago"."""
    seconds = max(0.0, seconds) if math.isfinite(seconds) else 0.0
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s ago"
    return f"{minutes // 60} h {minutes % 60} min ago"
