"""Moments as evidence: the numbered prompt lines, the `[n]` citations read back and written out,
the moments chosen for a small context, and chapters made of scene segments."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from streamer.archive.chapters import (
    _parse_titles,
    chapters_vtt,
    scene_segments,
    tag_title,
    title_segments,
)
from streamer.archive.evidence import (
    cited_numbers,
    moment_label,
    moment_line,
    pick_for_prompt,
    replace_citations,
    top_tags,
)
from streamer.archive.summaries import Chapter

WALL = dt.datetime(2024, 5, 1, 12, 3, 4).timestamp()


@dataclass
class Seen:
    stream: str = "door"
    media_time: float = 0.0
    wall_time: float = WALL
    caption: str | None = None
    tags: tuple[tuple[str, float], ...] = ()
    alerts: tuple[str, ...] = ()
    media_path: str | None = None
    scene_score: float = 0.0


def test_a_live_moment_is_shown_at_its_clock_time_and_a_files_at_its_media_time():
    tags = (("van", 0.8), ("car", 0.5), ("road", 0.2), ("sky", 0.1))
    live = Seen(caption="A van stops.", tags=tags, alerts=("a delivery van",))
    assert moment_line(3, live) == (
        "[3] door @ 12:03:04: A van stops.; tags: van, car, road; alerts: a delivery van"
    )
    assert moment_label(live, dated=True) == "door @ 2024-05-01 12:03:04"
    file = Seen(stream="talk", media_time=65.2, media_path="/v/talk.mp4")
    assert moment_line(1, file) == "[1] talk @ 0:01:05.2: no caption"


def test_a_long_caption_is_cut_in_the_prompt_line():
    line = moment_line(1, Seen(caption="word " * 100))
    assert len(line) < 200 and line.endswith("…")


@pytest.mark.parametrize(
    ("text", "count", "numbers"),
    [
        ("The van came [2] and left [5].", 5, (2, 5)),
        ("Both [3, 1] and again [1][4]; also [2-4].", 5, (3, 1, 4, 2)),
        ("Made up [9] and [0], real [2].", 5, (2,)),
        ("No citation here, [a] nor [ ] nor (2).", 5, ()),
        ("A huge range [1-400] is one citation.", 5, (1,)),
    ],
)  # fmt: skip
def test_citations_are_read_back_in_order_and_only_of_listed_moments(text, count, numbers):
    assert cited_numbers(text, count) == numbers


def test_citations_are_written_out_and_made_up_ones_dropped():
    labels = {1: "door @ 12:00:01", 2: "door @ 12:03:04"}
    text = "A van came [2], then [1, 2, 7]. A ghost [9]. Nothing [8, 9] here."
    assert replace_citations(text, labels) == (
        "A van came [door @ 12:03:04], then [door @ 12:00:01; door @ 12:03:04]. A ghost. "
        "Nothing here."
    )


def test_the_prompt_keeps_every_alert_and_spreads_the_rest():
    moments = [Seen(media_time=float(i), alerts=("a person",) if i in (3, 97) else ())
               for i in range(100)]  # fmt: skip
    picked = pick_for_prompt(moments, 10)
    times = [m.media_time for m in picked]
    assert len(picked) == 10 and times == sorted(times)
    assert {3.0, 97.0} <= set(times) and times[0] == 0.0 and max(times) >= 80
    assert pick_for_prompt(moments[:5], 10) == moments[:5]


def test_top_tags_sum_their_scores_over_the_moments():
    moments = [Seen(tags=(("car", 0.5), ("road", 0.4))), Seen(tags=(("road", 0.3),))]
    assert top_tags(moments, 2) == ["road", "car"]


# --- chapters -----------------------------------------------------------------------------------


def file_moments(scene_at: set[float], end: int = 60) -> list[Seen]:
    """A moment every 2 s of a file; a scene change at the given times."""
    return [Seen(stream="talk", media_time=float(t), media_path="/v/talk.mp4",
                 scene_score=0.9 if t in scene_at else 0.05,
                 tags=(("a slide", 0.6),) if t < 30 else (("a speaker", 0.7),))
            for t in range(0, end, 2)]  # fmt: skip


def test_scene_segments_split_at_scene_changes_and_cover_the_file():
    segments = scene_segments(file_moments({20.0, 40.0}), 61.0, 0.3)
    assert [(s.start, s.end) for s in segments] == [(0.0, 20.0), (20.0, 40.0), (40.0, 61.0)]
    assert sum(len(s.moments) for s in segments) == 30


def test_a_very_short_segment_joins_the_one_before_and_the_count_is_bounded():
    segments = scene_segments(file_moments({20.0, 22.0, 40.0}), 60.0, 0.3)  # 20–22: 2 s
    assert [(s.start, s.end) for s in segments] == [(0.0, 22.0), (22.0, 40.0), (40.0, 60.0)]
    many = scene_segments(file_moments(set(map(float, range(2, 60, 2)))), 60.0, 0.3, min_s=1)
    assert len(many) == 30  # the first moment and 29 changes
    bounded = scene_segments(file_moments(set(map(float, range(2, 60, 2)))), 60.0, 0.3,
                             min_s=1, most=5)  # fmt: skip
    assert len(bounded) == 5 and bounded[0].start == 0.0 and bounded[-1].end == 60.0
    assert scene_segments([], 10.0, 0.3) == []


async def test_without_an_llm_chapters_are_titled_by_their_tags_and_written_as_webvtt():
    segments = scene_segments(file_moments({30.0}), 60.0, 0.3)
    chapters = await title_segments(None, "talk", segments)
    assert chapters == [Chapter(0.0, 30.0, "A slide", "tags"),
                        Chapter(30.0, 60.0, "A speaker", "tags")]  # fmt: skip
    vtt = chapters_vtt([*chapters, Chapter(60.0, 3725.5, "Q&A <live>", "llm")])
    assert vtt.splitlines()[:8] == [
        "WEBVTT", "", "1", "00:00:00.000 --> 00:00:30.000", "A slide", "", "2",
        "00:00:30.000 --> 00:01:00.000",
    ]  # fmt: skip
    assert "00:01:00.000 --> 01:02:05.500\nQ&amp;A &lt;live&gt;\n" in vtt


def test_titles_are_read_from_the_answer_and_a_part_without_tags_gets_a_plain_title():
    answer = "Here are the titles:\n1: The opening slide\n2) **Speaker walks in**\n7: nonsense"
    assert _parse_titles(answer, 2) == {1: "The opening slide", 2: "Speaker walks in"}
    (bare,) = scene_segments([Seen(media_path="/v/a.mp4")], 5.0, 0.3)
    assert tag_title(bare, 4) == "Part 4"
