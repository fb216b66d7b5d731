"""Chapters of a file: its scene segments, titled by the LLM or by their tags, as WebVTT.

A segment is a run of consecutive moments between two scene changes (a moment whose scene
score reaches the threshold starts a new one). Very short segments are merged into the one
before (a flash, a cut back and forth), and the shortest are merged until at most
`MOST_CHAPTERS` remain. One LLM request titles them all (`n: title` per line); a segment the
answer leaves out, or every segment when there is no LLM or it fails, is titled by its top tags.

    WEBVTT

    1
    00:00:00.000 --> 00:01:12.400
    A rabbit wakes up in a meadow
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.archive.evidence import top_tags
from streamer.archive.summaries import Chapter
from streamer.errors import LlmError
from streamer.llm.prompts import format_time

__all__ = ["Segment", "chapters_vtt", "scene_segments", "tag_title", "title_segments"]

log = logging.getLogger("streamer.archive")

MOST_CHAPTERS = 40
TITLE_CHARS = 60
_TITLE_LINE = re.compile(r"^\W*(\d+)\s*[:.)\]\-–]+\s*(.+?)\s*$")
_SYSTEM = (
    "You give the parts of a video short titles. Answer with one line per part, written as "
    "`n: title`, each title at most six words of plain text. No other text."
)


@dataclass
class Segment:
    """Consecutive moments of a file between two scene changes.

    Attributes:
        start, end: media time, seconds (`end` is the next segment's start, or the file's end).
        moments: its moments, in time order.
    """

    start: float
    end: float
    moments: list[Any] = field(default_factory=list)


def scene_segments(
    moments: Sequence[Any],
    end: float,
    threshold: float,
    *,
    min_s: float | None = None,
    most: int = MOST_CHAPTERS,
) -> list[Segment]:
    """Split a file's moments into scene segments.

    Args:
        moments: the file's moments (with `media_time` and `scene_score`), any order.
        end: the file's end, media seconds.
        threshold: the scene score that starts a new segment.
        min_s: a shorter segment is merged into the one before it (default: a twentieth of
            the file, at least 1 s and at most 30 s).
        most: at most this many segments (the shortest are merged into a neighbour).

    Returns:
        The segments, in order, covering 0 to `end`; none when there are no moments.
    """
    ordered = sorted(moments, key=lambda m: m.media_time)
    if not ordered:
        return []
    end = max(end, ordered[-1].media_time)
    segments: list[Segment] = []
    for moment in ordered:
        if not segments or moment.scene_score >= threshold:
            segments.append(Segment(moment.media_time, end))
        segments[-1].moments.append(moment)
    segments[0].start = 0.0
    for before, after in itertools.pairwise(segments):
        before.end = after.start
    if min_s is None:
        min_s = min(30.0, max(1.0, end / 20))
    merged: list[Segment] = []
    for segment in segments:
        if merged and segment.end - segment.start < min_s:
            _join(merged[-1], segment)
        else:
            merged.append(segment)
    if len(merged) > 1 and merged[0].end - merged[0].start < min_s:
        _join(merged[0], merged.pop(1))
    while len(merged) > max(1, most):
        shortest = min(range(len(merged)), key=lambda i: merged[i].end - merged[i].start)
        keep = shortest - 1 if shortest > 0 else 0
        _join(merged[keep], merged.pop(keep + 1))
    return merged


def _join(first: Segment, second: Segment) -> None:
    first.end = max(first.end, second.end)
    first.moments.extend(second.moments)


def tag_title(segment: Segment, number: int) -> str:
    """A title from the segment's top tags ("Dog, grass, park"); its caption, or "Part n",
    when it has no tags."""
    labels = top_tags(segment.moments, 3)
    if labels:
        text = ", ".join(labels)
    else:
        caption = next((m.caption for m in segment.moments if m.caption), None)
        text = caption or f"Part {number}"
    return _cut(text[:1].upper() + text[1:])


async def title_segments(client: Any, stream: str, segments: Sequence[Segment]) -> list[Chapter]:
    """Chapters from segments: titled by the LLM in one request, else by their tags.

    Args:
        client: an `LlmClient`, or None for titles from tags.
        stream: the file's stream name, for the prompt.
        segments: the file's segments.

    Returns:
        One chapter per segment. An LLM failure is logged and the tags title them.
    """
    titles: dict[int, str] = {}
    if client is not None and segments:
        try:
            answer = await client.complete(
                _SYSTEM, _titles_prompt(stream, segments), max_tokens=16 * len(segments) + 16
            )
        except LlmError as exc:
            log.warning("archive: chapters of %s titled by their tags: %s", stream, exc)
        else:
            titles = _parse_titles(answer, len(segments))
    return [
        Chapter(s.start, s.end, titles[n], "llm") if n in titles
        else Chapter(s.start, s.end, tag_title(s, n), "tags")
        for n, s in enumerate(segments, 1)
    ]  # fmt: skip


def _titles_prompt(stream: str, segments: Sequence[Segment]) -> str:
    lines = [f'The video "{stream}" has {len(segments)} parts:']
    for n, segment in enumerate(segments, 1):
        captions = list(dict.fromkeys(m.caption for m in segment.moments if m.caption))[:3]
        said = "; ".join(captions) or "no caption"
        tags = ", ".join(top_tags(segment.moments, 4)) or "none"
        span = f"{format_time(segment.start)} to {format_time(segment.end)}"
        lines.append(f"[{n}] {span}: {said}; tags: {tags}")
    lines.append(f"Give each of the {len(segments)} parts a title, one line each as `n: title`.")
    return "\n".join(lines)


def _parse_titles(answer: str, count: int) -> dict[int, str]:
    titles: dict[int, str] = {}
    for line in answer.splitlines():
        match = _TITLE_LINE.match(line)
        if match and 1 <= int(match[1]) <= count and int(match[1]) not in titles:
            title = match[2].strip().strip("\"'“”*`").strip()
            if any(ch.isalnum() for ch in title):
                titles[int(match[1])] = _cut(title)
    return titles


def _cut(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= TITLE_CHARS:
        return text
    return text[: TITLE_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,;:-") + "…"


def chapters_vtt(chapters: Sequence[Chapter]) -> str:
    """A WebVTT chapters file (`<track kind="chapters">`): one numbered cue per chapter."""
    cues = ["WEBVTT", ""]
    for n, chapter in enumerate(chapters, 1):
        title = chapter.title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        cues += [str(n), f"{_stamp(chapter.start)} --> {_stamp(chapter.end)}", title, ""]
    return "\n".join(cues)


def _stamp(seconds: float) -> str:
    millis = round(max(0.0, seconds) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"
