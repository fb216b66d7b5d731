"""SubtitleWriter: SRT and WebVTT files, checked with strict parsers written here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamer.core.frame import Caption
from streamer.outputs import SinkError, SinkOpenError, SubtitleWriter

_SRT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})"
_VTT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})"

Cue = tuple[float, float, str]


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def _check_cues(cues: list[Cue]) -> list[Cue]:
    """Times well-ordered, no empty cue or blank line, no stray timing arrow in a body."""
    for i, (start, end, body) in enumerate(cues):
        assert end > start, f"cue {i + 1} ends at {end} before it starts at {start}"
        assert body and all(line.strip() for line in body.split("\n")), f"cue {i + 1} is empty"
        assert "-->" not in body, f"cue {i + 1} has a timing arrow in its text"
        if i:
            assert start >= cues[i - 1][1], f"cue {i + 1} overlaps cue {i}"
    return cues


def parse_srt(text: str) -> list[Cue]:
    """Strict SubRip: cues numbered from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, blank-line ends."""
    assert text == "" or text.endswith("\n\n"), "the last cue is not terminated"
    cues = []
    for number, block in enumerate(text.split("\n\n")[:-1], start=1):
        lines = block.split("\n")
        assert lines[0] == str(number), f"cue {number} is numbered {lines[0]!r}"
        times = re.fullmatch(f"{_SRT_TIME} --> {_SRT_TIME}", lines[1])
        assert times, f"bad SRT timing line {lines[1]!r}"
        g = times.groups()
        cues.append((_seconds(*g[:4]), _seconds(*g[4:]), "\n".join(lines[2:])))
    return _check_cues(cues)


def parse_vtt(text: str) -> list[Cue]:
    """Strict WebVTT: `WEBVTT` header, `HH:MM:SS.mmm --> HH:MM:SS.mmm`, escaped markup."""
    header, _, rest = text.partition("\n\n")
    assert header == "WEBVTT", f"bad header {header!r}"
    assert rest == "" or rest.endswith("\n\n"), "the last cue is not terminated"
    cues = []
    for block in rest.split("\n\n")[:-1]:
        lines = block.split("\n")
        times = re.fullmatch(f"{_VTT_TIME} --> {_VTT_TIME}", lines[0])
        assert times, f"bad VTT timing line {lines[0]!r}"
        body = "\n".join(lines[1:])
        # Only our escapes may appear: no raw markup, no bare ampersand.
        assert "<" not in body and ">" not in body
        assert re.fullmatch(r"([^&]|&(amp|lt|gt);)*", body, re.S), f"bad escape in {body!r}"
        g = times.groups()
        cues.append((_seconds(*g[:4]), _seconds(*g[4:]), body))
    return _check_cues(cues)


def _unescape_vtt(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _caption(pts: float, text: str, source: str = "llm") -> Caption:
    return Caption("cam", int(pts * 25), pts, text, source)


@pytest.fixture
def paths(tmp_path) -> tuple[Path, Path]:
    return tmp_path / "out.srt", tmp_path / "out.vtt"


def _read(paths: tuple[Path, Path]) -> tuple[list[Cue], list[Cue]]:
    srt, vtt = paths
    return parse_srt(srt.read_text("utf-8")), parse_vtt(vtt.read_text("utf-8"))


def test_one_cue_per_caption_in_media_time(paths):
    writer = SubtitleWriter(*map(str, paths))
    writer.add(_caption(0.0, "a dog on grass"))
    writer.add(_caption(4.2, "a cat on a sofa"))
    writer.add(_caption(3725.5, "night"))
    writer.close(end_pts=3730.04)

    srt, vtt = _read(paths)
    expected = [
        (0.0, 4.2, "a dog on grass"),
        (4.2, 3725.5, "a cat on a sofa"),
        (3725.5, 3730.04, "night"),
    ]
    assert srt == vtt == expected
    assert "01:02:05,500 --> 01:02:10,040" in paths[0].read_text()
    assert "01:02:05.500 --> 01:02:10.040" in paths[1].read_text()


def test_cues_are_on_disk_before_close(paths):
    writer = SubtitleWriter(*map(str, paths))
    writer.add(_caption(1.0, "first"))
    writer.add(_caption(2.5, "second"))
    # An interrupted run never calls close: the finished cue must already be complete.
    srt, vtt = _read(paths)
    assert srt == vtt == [(1.0, 2.5, "first")]
    writer.close(3.0)


def test_identical_caption_extends_the_cue(paths):
    writer = SubtitleWriter(*map(str, paths))
    writer.add(_caption(0.0, "a dog"))
    writer.add(_caption(2.0, "a  dog "))  # the same once cleaned
    writer.add(_caption(4.0, "a cat"))
    writer.close(6.0)
    srt, _ = _read(paths)
    assert srt == [(0.0, 4.0, "a dog"), (4.0, 6.0, "a cat")]
    assert writer.cues_written == 2


def test_last_cue_lasts_at_least_half_a_second(paths):
    writer = SubtitleWriter(*map(str, paths))
    writer.add(_caption(10.0, "the end"))
    writer.close(end_pts=10.1)
    writer.close(end_pts=99.0)  # idempotent
    srt, vtt = _read(paths)
    assert srt == vtt == [(10.0, 10.5, "the end")]


def test_caption_replaced_at_the_same_time_leaves_no_empty_cue(paths):
    writer = SubtitleWriter(*map(str, paths))
    writer.add(_caption(1.0, "draft"))
    writer.add(_caption(1.0, "final"))
    writer.add(_caption(0.5, "late"))  # out of order: clamped, never runs backwards
    writer.close(3.0)
    srt, vtt = _read(paths)
    assert srt == vtt == [(1.0, 3.0, "late")]


def test_empty_caption_ends_the_cue(paths):
    writer = SubtitleWriter(*map(str, paths))
    writer.add(_caption(0.0, "something"))
    writer.add(_caption(1.0, " \n\x00 "))
    writer.add(_caption(3.0, "again"))
    writer.close(4.0)
    srt, _ = _read(paths)
    assert srt == [(0.0, 1.0, "something"), (3.0, 4.0, "again")]


HOSTILE = (
    "line one\n\n\nline two\r\n"
    "00:00:01,000 --> 00:00:02,000\n"
    "3\n"
    "<b>bold</b> & <i>x</i> a-->b a--->b\x00\x07\x1b[31m\t tab\u2028sep 🐶 café \ud800"
)


def test_hostile_text_cannot_break_either_format(paths):
    writer = SubtitleWriter(*map(str, paths))
    writer.add(_caption(0.0, HOSTILE))
    writer.add(_caption(2.0, "next"))
    writer.close(3.0)

    srt, vtt = _read(paths)  # the strict parsers raise on any damage
    assert [c[:2] for c in srt] == [c[:2] for c in vtt] == [(0.0, 2.0), (2.0, 3.0)]
    lines = _unescape_vtt(vtt[0][2]).split("\n")
    assert lines == [
        "line one",
        "line two",
        "00:00:01,000 -> 00:00:02,000",
        "3",
        "<b>bold</b> & <i>x</i> a->b a->b[31m tab",
        "sep 🐶 café",
    ]
    # SRT has no escapes: markup is neutralised so players show it as text.
    assert "<b>" not in srt[0][2] and "\u2039b\u203abold" in srt[0][2]


def test_only_one_format(tmp_path):
    vtt = tmp_path / "only.vtt"
    writer = SubtitleWriter(None, str(vtt))
    writer.add(_caption(0.0, "hello"))
    writer.close(1.0)
    assert parse_vtt(vtt.read_text()) == [(0.0, 1.0, "hello")]
    assert list(tmp_path.iterdir()) == [vtt]


def test_no_captions_gives_valid_empty_files(paths):
    SubtitleWriter(*map(str, paths)).close(5.0)
    assert _read(paths) == ([], [])


def test_unwritable_path_fails_at_construction(tmp_path):
    srt = tmp_path / "ok.srt"
    bad = tmp_path / "missing" / "out.vtt"
    with pytest.raises(SinkOpenError, match="cannot open WebVTT output") as caught:
        SubtitleWriter(str(srt), str(bad))
    assert str(bad) in str(caught.value)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_add_after_close_is_an_error(paths):
    writer = SubtitleWriter(*map(str, paths))
    writer.close(0.0)
    with pytest.raises(SinkError, match="is closed"):
        writer.add(_caption(1.0, "late"))
