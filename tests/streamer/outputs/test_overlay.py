"""Overlay: what gets drawn where, determinism, hostile text and tiny frames."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core.frame import Annotation, Caption, Tag
from streamer.outputs import _fonts
from streamer.outputs._text import forget_fonts
from streamer.outputs.overlay import Hud, Overlay, OverlayStyle, ascii_text

ANNOTATION = Annotation(
    "cam", 10, 0.4, (Tag("dog", 0.62), Tag("grass", 0.21), Tag("cat", 0.1)), 0.3
)
CAPTION = Caption(
    "cam", 10, 0.4, "A brown dog runs across a green lawn, chasing a red ball.", "llm"
)
HUD = Hud(lines=("12.3 fps", "frame 120/500"), warning=None, status=None)


def _frame(height: int = 360, width: int = 640) -> np.ndarray:
    """A textured frame, so blending and text both change pixels."""
    rng = np.random.default_rng(0)
    return rng.integers(40, 216, (height, width, 3), dtype=np.uint8)


def _draw(image: np.ndarray, overlay: Overlay | None = None, **changes) -> np.ndarray:
    args = {"annotation": ANNOTATION, "caption": CAPTION, "now_pts": 4.6, "hud": HUD} | changes
    return (overlay or Overlay()).draw(image, **args)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


def test_draws_in_place_and_only_near_the_edges():
    before = _frame()
    image = before.copy()
    assert _draw(image) is image

    changed = _changed(before, image)
    h, w = changed.shape
    assert changed[int(h * 0.85) :, :].mean() > 0.5, "caption box at the bottom"
    assert changed[: h // 6, : w // 6].mean() > 0.5, "tag box top-left"
    assert changed[: h // 10, -w // 10 :].mean() > 0.5, "HUD top-right"
    assert not changed[h // 3 : h // 2, w // 3 : 2 * w // 3].any(), "the middle is untouched"


def test_caption_box_darkens_and_carries_text():
    before = np.full((360, 640, 3), 200, np.uint8)
    image = _draw(before.copy(), annotation=None, hud=Hud())
    box = image[-40:-10, 20:-20].astype(int)
    assert box.min() < 120, "the box is shaded"
    assert box.max() > 200, "text is drawn over the box, brighter than the background"
    assert not _changed(before, image)[:150].any(), "nothing but the caption was drawn"


def test_same_inputs_give_identical_pixels():
    assert np.array_equal(_draw(_frame()), _draw(_frame()))
    assert np.array_equal(_draw(_frame(), Overlay()), _draw(_frame(), Overlay()))


def test_caption_age_and_source_change_the_drawing():
    older = _draw(_frame(), now_pts=9.9)
    assert not np.array_equal(_draw(_frame()), older)
    from_tags = Caption("cam", 10, 0.4, CAPTION.text, "tags")
    assert not np.array_equal(_draw(_frame()), _draw(_frame(), caption=from_tags))


def test_warning_banner_is_red():
    hud = Hud(lines=("1 fps",), warning="RANDOM WEIGHTS: tags and captions are meaningless")
    image = _draw(np.full((360, 640, 3), 128, np.uint8), caption=None, annotation=None, hud=hud)
    red, green, blue = image[2:8, 300:340].reshape(-1, 3).mean(axis=0)
    assert red > 150 and green < 60 and blue < 60


def test_top_k_limits_the_tags_shown():
    def tag_box(k: int) -> int:
        before = np.full((360, 640, 3), 128, np.uint8)
        image = _draw(before.copy(), Overlay(OverlayStyle(top_k_tags=k)), caption=None, hud=Hud())
        rows = np.flatnonzero(_changed(before, image)[:, :20].any(axis=1))
        return 0 if rows.size == 0 else int(rows.max())

    assert tag_box(0) == 0
    assert 0 < tag_box(1) < tag_box(3)
    assert tag_box(3) == tag_box(10), "only three tags exist"


def test_long_captions_stop_at_max_lines():
    long = Caption("cam", 0, 0.0, "word " * 400, "llm")

    def box_top(lines: int) -> int:
        before = np.full((720, 1280, 3), 128, np.uint8)
        style = OverlayStyle(max_caption_lines=lines)
        image = _draw(before.copy(), Overlay(style), caption=long, annotation=None, hud=Hud())
        return int(np.flatnonzero(_changed(before, image).any(axis=1)).min())

    assert box_top(1) > box_top(2) > box_top(4)
    assert box_top(4) > 720 // 2, "even a long caption leaves the top of the frame free"


def test_a_portrait_frame_gets_the_text_size_of_its_landscape_twin():
    # Text is sized by the shorter side: a 360x640 phone video sized by its height had text
    # as large as a 1138x640 frame's, and its tags and HUD were cut to "crowd of p...".
    def caption_box_height(height: int, width: int) -> int:
        before = np.full((height, width, 3), 128, np.uint8)
        short = Caption("cam", 0, 0.0, "a dog", "llm")
        image = _draw(before.copy(), caption=short, annotation=None, hud=Hud())
        return height - int(np.flatnonzero(_changed(before, image).any(axis=1)).min())

    assert caption_box_height(640, 360) == caption_box_height(360, 640)
    assert caption_box_height(1280, 720) == caption_box_height(720, 1280)
    assert caption_box_height(720, 1280) > caption_box_height(360, 640)


@pytest.mark.parametrize("size", [(48, 64), (47, 63), (1, 1), (21, 1001), (1001, 13)])
def test_tiny_and_odd_frames_do_not_raise(size):
    hud = Hud(lines=("12.3 fps", "x" * 300), warning="W" * 200, status="LLM: down")
    long_word = Caption("cam", 0, 0.0, "supercalifragilistic" * 30, "tags")
    before = _frame(*size)
    image = _draw(before.copy(), caption=long_word, hud=hud)
    assert image.shape == (*size, 3) and image.dtype == np.uint8
    if min(size) > 1:
        assert _changed(before, image).any()


def _tag_box_width(*labels: str) -> int:
    """Width of the tag box drawn for `labels` on a flat frame."""
    before = np.full((360, 640, 3), 128, np.uint8)
    tags = Annotation("cam", 0, 0.0, tuple(Tag(label, 0.21) for label in labels), 0.0)
    image = _draw(before.copy(), annotation=tags, caption=None, hud=Hud())
    return int(np.flatnonzero(_changed(before, image)[:120].any(axis=0)).max())


def test_a_japanese_tag_draws_its_name():
    # Folded to ASCII, the label vanished and the tag read " 0.21".
    assert _tag_box_width("日本語のラベル") > _tag_box_width("") + 40


def test_a_character_no_font_has_still_draws_something():
    # U+10FFFD (private use) is in no font: it is drawn as "?", where it used to vanish.
    mixed = ("café", "\U0010fffd bike")  # "café" puts both rows in the font that has "é"
    assert np.array_equal(
        _draw(_frame(), annotation=_tags(*mixed), caption=None),
        _draw(_frame(), annotation=_tags("café", "? bike"), caption=None),
    )
    before = np.full((360, 640, 3), 200, np.uint8)
    only = Caption("cam", 0, 0.0, "\U0010fffd\U0010fffd", "llm")
    image = _draw(before.copy(), caption=only, annotation=None, hud=Hud())
    assert _changed(before, image)[-40:].any(), "the caption box is drawn"


def _tags(*labels: str) -> Annotation:
    return Annotation("cam", 0, 0.0, tuple(Tag(label, 0.5) for label in labels), 0.0)


def test_accented_text_keeps_its_accents():
    def draw(text: str, *labels: str) -> np.ndarray:
        caption = Caption("cam", 0, 0.0, text, "llm")
        return _draw(_frame(), caption=caption, annotation=_tags(*labels))

    accented = draw("Straße mit Fußgängern, café crème", "café crème")
    assert not np.array_equal(accented, draw("Strasse mit Fussgangern, cafe creme", "cafe creme"))
    # The same text, composed or decomposed (e + combining acute), draws the same.
    decomposed = "Straße mit Fußgängern, cafe\u0301 cre\u0300me"
    assert np.array_equal(accented, draw(decomposed, "cafe\u0301 cre\u0300me"))


def test_ascii_text_is_drawn_as_before_and_hostile_characters_vanish():
    hostile = Caption("cam", 0, 0.0, "A dog\n\x00\x1b  runs\t", "llm")
    plain = Caption("cam", 0, 0.0, "A dog runs", "llm")
    assert np.array_equal(_draw(_frame(), caption=hostile), _draw(_frame(), caption=plain))
    unicode_hostile = Caption("cam", 0, 0.0, "Café\u200b\n\x00日本\u202e", "llm")
    unicode_plain = Caption("cam", 0, 0.0, "Café 日本", "llm")
    assert np.array_equal(
        _draw(_frame(), caption=unicode_hostile), _draw(_frame(), caption=unicode_plain)
    )


def test_a_long_japanese_caption_wraps_onto_several_lines():
    long = Caption("cam", 0, 0.0, "犬が緑の芝生の上を走っています。" * 8, "llm")
    before = np.full((360, 640, 3), 128, np.uint8)
    image = _draw(before.copy(), caption=long, annotation=None, hud=Hud())
    short = _draw(
        before.copy(), caption=Caption("cam", 0, 0.0, "犬", "llm"), annotation=None, hud=Hud()
    )
    top = int(np.flatnonzero(_changed(before, image).any(axis=1)).min())
    assert top < int(np.flatnonzero(_changed(before, short).any(axis=1)).min())


def test_without_system_fonts_text_still_draws(monkeypatch):
    # A machine with no fonts beyond Pillow's own (Latin only): accents are still drawn, and a
    # Japanese tag shows one "?" per character rather than nothing.
    monkeypatch.setattr(_fonts, "_font_files", dict)
    monkeypatch.setattr(_fonts, "_fontconfig_matches", list)
    forget_fonts()
    try:
        assert _fonts.chain() == (_fonts.BUNDLED,)
        assert _tag_box_width("日本語") > _tag_box_width("")
        assert _tag_box_width("日本語") == _tag_box_width("é??")
    finally:
        monkeypatch.undo()
        forget_fonts()


def test_ascii_text_folds_and_strips():
    assert ascii_text("Café “crème”\n— 2 dogs 🐶") == 'Cafe "creme" - 2 dogs ?'
    assert ascii_text("tab\there\r\nline\x00\x7f…") == "tab here line..."
    assert ascii_text("日本語") == "???"
    assert ascii_text("e\u0301\u200d") == "e", "marks and joiners are no characters of their own"
    assert all(" " <= ch <= "~" for ch in ascii_text("".join(map(chr, range(0x3000)))))


def test_read_only_frame_is_drawn_on_a_copy():
    before = _frame()
    before.flags.writeable = False
    image = _draw(before)
    assert image is not before and _changed(before, image).any()


def test_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        _draw(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        _draw(np.zeros((10, 10, 3), np.float32))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("font_scale", 0, "`font_scale` must be a number in (0, 0.25], got 0"),
        ("font_scale", float("nan"), "`font_scale` must be a number"),
        ("max_caption_lines", 0, "`max_caption_lines` must be an integer >= 1, got 0"),
        ("max_caption_lines", 2.0, "`max_caption_lines` must be an integer >= 1, got 2.0"),
        ("box_opacity", 1.5, "`box_opacity` must be a number in [0, 1], got 1.5"),
        ("top_k_tags", -1, "`top_k_tags` must be an integer >= 0, got -1"),
        ("top_k_tags", True, "`top_k_tags` must be an integer >= 0, got True"),
    ],
)
def test_style_is_validated(field, value, message):
    with pytest.raises(ValueError) as caught:
        OverlayStyle(**{field: value})
    assert str(caught.value).startswith(message)
