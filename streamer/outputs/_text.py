"""The overlay's pens: how a line of text is measured and drawn, and fitted into a box.

Two pens share one interface (`prepare`, `measure`, `draw`):

- `Hershey` draws with OpenCV's Hershey font, which covers printable ASCII only. Text that is
  all ASCII (tag names, the HUD, most captions) is drawn with it, as fast as ever.
- `FreeType` draws anything else with Pillow's FreeType and the fonts of `_fonts.chain()`,
  each character with the first font that has it. A rendered line is cached as an alpha mask,
  so a caption or tag costs one rendering when it changes and a blend on every frame.

A character no font has is replaced by its ASCII look-alike ("ß" → "ss") or by "?", so a
label is never drawn empty.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from PIL import Image, ImageDraw

from streamer.outputs import _fonts

__all__ = [
    "FreeType",
    "Hershey",
    "Pen",
    "ascii_text",
    "fit",
    "forget_fonts",
    "pen_for",
    "unicode_text",
    "wrap",
]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_ELLIPSIS = "..."
_SPACES = re.compile(r"\s+")
# Typographic characters that NFKD does not fold to ASCII but that have an obvious stand-in.
_ASCII_LOOKALIKES = str.maketrans(
    {
        "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'",
        "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
        "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
        "…": "...", "•": "*", "·": "*", "×": "x", "÷": "/", "°": " deg",
        "ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D",
        "ł": "l", "Ł": "L", "þ": "th", "Þ": "Th", "œ": "oe", "Œ": "OE",
    }
)  # fmt: skip
# Invisible on their own: controls, format characters (joiners, bidi marks), surrogates, marks.
_INVISIBLE = ("Cc", "Cf", "Cs", "Mn", "Mc", "Me")
_HIDDEN = ("Cc", "Cf", "Cs")  # never drawn; marks are, on the character before them


class Pen(Protocol):
    """Measures and draws one line of text at the layout's size."""

    def prepare(self, text: str) -> str:
        """`text` on one line, reduced to what this pen can draw."""

    def measure(self, text: str) -> int:
        """Advance width of a prepared `text` in pixels."""

    def draw(self, image: np.ndarray, text: str, x: int, baseline: int, colour: tuple) -> None:
        """Draw a prepared `text` onto `image` with its baseline starting at (x, baseline)."""


@dataclass(frozen=True)
class Hershey:
    """OpenCV's FONT_HERSHEY_SIMPLEX at a fontScale and thickness: printable ASCII only."""

    scale: float
    thickness: int

    @property
    def cap(self) -> int:
        """Height of its capitals in pixels, as drawn (the other pen matches it)."""
        return _hershey_cap(self.scale, self.thickness)

    def prepare(self, text: str) -> str:
        return ascii_text(text)

    def measure(self, text: str) -> int:
        return _hershey_width(text, self.scale, self.thickness)

    def draw(self, image: np.ndarray, text: str, x: int, baseline: int, colour: tuple) -> None:
        cv2.putText(
            image, text, (x, baseline), _FONT, self.scale, colour, self.thickness, cv2.LINE_AA
        )


@dataclass(frozen=True)
class FreeType:
    """Pillow's FreeType with the fallback fonts, sized so capitals are `cap` pixels tall."""

    cap: int

    def prepare(self, text: str) -> str:
        return unicode_text(text)

    def measure(self, text: str) -> int:
        return _advance(text, _px(self.cap))

    def draw(self, image: np.ndarray, text: str, x: int, baseline: int, colour: tuple) -> None:
        alpha, clear, dx, dy = _freetype_mask(text, _px(self.cap))
        x0, y0 = x + dx, baseline + dy
        h, w = image.shape[:2]
        cx0, cy0 = max(0, x0), max(0, y0)
        cx1, cy1 = min(w, x0 + alpha.shape[1]), min(h, y0 + alpha.shape[0])
        if cx1 <= cx0 or cy1 <= cy0:
            return
        cut = np.s_[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        roi = image[cy0:cy1, cx0:cx1]
        ink = _solid(cy1 - cy0, cx1 - cx0, tuple(colour))
        roi[...] = cv2.blendLinear(ink, roi, np.ascontiguousarray(alpha[cut]), clear[cut])


def pen_for(hershey: Hershey, *texts: str) -> Pen:
    """The pen for a box holding `texts`: `hershey` when they are all ASCII (or no font loads),
    else FreeType with capitals as tall as `hershey`'s."""
    if all(text.isascii() for text in texts) or not _fonts.chain():
        return hershey
    return FreeType(hershey.cap)


def forget_fonts() -> None:
    """Look for fonts again on next use and drop all text rendered with the old ones."""
    for cached in (_fonts.chain, _px, _font_of, _runs, _advance, _freetype_mask):
        cached.cache_clear()


@functools.lru_cache(maxsize=512)
def ascii_text(text: str) -> str:
    """Fold `text` to printable ASCII on one line, for OpenCV's Hershey fonts.

    Accents are dropped, typographic punctuation becomes its ASCII look-alike, and a visible
    character with no ASCII form (emoji, CJK) becomes "?", so the text never vanishes.

    Example:
        >>> ascii_text("Café “crème”\\n— 2 dogs 🐶")
        'Cafe "creme" - 2 dogs ?'
    """
    chars = [" " if ch.isspace() else _fold(ch) for ch in text]
    return _SPACES.sub(" ", "".join(chars)).strip()


def _fold(ch: str) -> str:
    folded = unicodedata.normalize("NFKD", ch.translate(_ASCII_LOOKALIKES))
    kept = "".join(c for c in folded if " " <= c <= "~")
    if kept or unicodedata.category(ch) in _INVISIBLE:
        return kept
    return "?"


@functools.lru_cache(maxsize=512)
def unicode_text(text: str) -> str:
    """`text` on one line for the FreeType pen: composed (NFC), whitespace runs as one space,
    and invisible controls and format characters removed.

    Example:
        >>> unicode_text("Cafe\\u0301\\n日本\\x00 ")
        'Café 日本'
    """
    text = unicodedata.normalize("NFC", text)
    chars = [
        " " if ch.isspace() else "" if unicodedata.category(ch) in _HIDDEN else ch for ch in text
    ]
    return _SPACES.sub(" ", "".join(chars)).strip()


@functools.lru_cache(maxsize=4096)
def _hershey_width(text: str, scale: float, thickness: int) -> int:
    return cv2.getTextSize(text, _FONT, scale, thickness)[0][0]


@functools.lru_cache(maxsize=64)
def _hershey_cap(scale: float, thickness: int) -> int:
    (width, height), _ = cv2.getTextSize("H", _FONT, scale, thickness)
    canvas = np.zeros((2 * height + 4, width + 4), np.uint8)
    cv2.putText(canvas, "H", (2, 2 * height), _FONT, scale, 255, thickness, cv2.LINE_AA)
    rows = np.flatnonzero((canvas > 127).any(axis=1))
    return int(rows[-1] - rows[0] + 1) if rows.size else max(1, height)


@functools.lru_cache(maxsize=64)
def _px(cap: int) -> int:
    """Pixels per em at which the first font's capitals are `cap` pixels tall."""
    with _fonts.LOCK:
        font = _fonts.load(_fonts.chain()[0], 100)
        top, bottom = font.getbbox("H", anchor="ls")[1::2]
    return max(4, round(cap * 100 / max(1, bottom - top)))


@functools.lru_cache(maxsize=4096)
def _font_of(ch: str) -> str | None:
    return next((key for key in _fonts.chain() if _fonts.has_glyph(key, ch)), None)


@functools.lru_cache(maxsize=1024)
def _runs(text: str) -> tuple[tuple[str, str], ...]:
    """`text` cut into (font key, piece) runs; characters no font has are replaced."""
    runs: list[tuple[str, str]] = []
    for ch in text:
        key = _font_of(ch)
        if runs and (ch == " " or (key is not None and unicodedata.category(ch)[0] == "M")):
            key = runs[-1][0]  # spaces and marks stay with the text before them
        elif key is None:
            if unicodedata.category(ch) in _INVISIBLE:
                continue
            key, ch = _fonts.chain()[0], _fold(ch)
        if runs and runs[-1][0] == key:
            runs[-1] = (key, runs[-1][1] + ch)
        else:
            runs.append((key, ch))
    return tuple(runs)


@functools.lru_cache(maxsize=4096)
def _advance(text: str, px: int) -> int:
    """Width of `text` in pixels, without rendering it (wrapping measures many prefixes)."""
    with _fonts.LOCK:
        return math.ceil(sum(_fonts.load(key, px).getlength(piece) for key, piece in _runs(text)))


@functools.lru_cache(maxsize=256)
def _freetype_mask(text: str, px: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(opacity of the ink and of what is under it, H×W float32 each; the ink's x and y
    offset from the start of the baseline)."""
    with _fonts.LOCK:
        pieces = [(_fonts.load(key, px), piece) for key, piece in _runs(text)]
        ascent = max((font.getmetrics()[0] for font, _ in pieces), default=0)
        descent = max((font.getmetrics()[1] for font, _ in pieces), default=0)
        canvas = Image.new("L", (_advance(text, px) + px, ascent + descent + 1))
        draw, x = ImageDraw.Draw(canvas), 0.0
        for font, piece in pieces:
            draw.text((x, ascent), piece, font=font, fill=255, anchor="ls")
            x += font.getlength(piece)
    box = canvas.getbbox() or (0, 0, 0, 0)
    alpha = np.asarray(canvas.crop(box), np.float32) / 255
    clear = 1 - alpha
    alpha.flags.writeable = clear.flags.writeable = False
    return alpha, clear, box[0], box[1] - ascent


@functools.lru_cache(maxsize=64)
def _solid(h: int, w: int, colour: tuple[int, ...]) -> np.ndarray:
    block = np.empty((h, w, 3), np.uint8)
    block[...] = colour
    block.flags.writeable = False
    return block


def fit(text: str, max_w: int, pen: Pen) -> str:
    """`text` cut to fit `max_w` pixels, ending in "..." when cut."""
    if pen.measure(text) <= max_w:
        return text
    return _with_ellipsis(text, max_w, pen)


def _with_ellipsis(text: str, max_w: int, pen: Pen) -> str:
    # Binary search for the longest prefix that fits with the ellipsis after it.
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if pen.measure(text[:mid].rstrip() + _ELLIPSIS) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + _ELLIPSIS


@functools.lru_cache(maxsize=64)
def wrap(text: str, max_w: int, pen: Pen, max_lines: int) -> tuple[str, ...]:
    """Word-wrap `text` into at most `max_lines` lines of at most `max_w` pixels.

    Words wider than a line are split (text without spaces, such as Japanese, so too); text
    that does not fit ends in "...". Cached because the same caption is drawn on every frame
    until the next one arrives.
    """
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if pen.measure(candidate) <= max_w:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while pen.measure(current) > max_w and len(current) > 1:
            cut = _longest_prefix(current, max_w, pen)
            lines.append(current[:cut])
            current = current[cut:]
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) <= max_lines:
        return tuple(lines)
    kept = lines[:max_lines]
    kept[-1] = _with_ellipsis(kept[-1] + " " + lines[max_lines], max_w, pen)
    return tuple(kept)


def _longest_prefix(word: str, max_w: int, pen: Pen) -> int:
    """Length of the longest prefix of `word` that fits (at least 1, so wrapping progresses)."""
    lo, hi = 1, len(word)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if pen.measure(word[:mid]) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return lo
