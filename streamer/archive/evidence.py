"""Moments as evidence for the LLM: numbered lines in a prompt, and the `[n]` citations back.

Summaries and answers share one convention. The prompt lists moments as

    [1] door @ 12:03:04: A van stops at the gate; tags: van, car, road; alerts: a delivery van

and asks the model to cite `[n]` after every claim. The answer's citations are read back
(`[2]`, `[2, 5]`, `[2][5]`, `[2-4]`), only numbers of listed moments are kept, and each is
replaced for the reader by the moment itself: `[door @ 12:03:04]`. A number the model made up
is dropped from the text rather than shown as evidence it is not.

A moment is anything with the attributes of `streamer.archive.Moment` that are read here
(`stream`, `media_time`, `wall_time`, `caption`, `tags`, `alerts`, `media_path`): a file's
moment is shown at its media time (the file's own clock), a live stream's at its wall time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from streamer.llm.prompts import format_time

__all__ = [
    "MomentLike",
    "cited_numbers",
    "moment_label",
    "moment_line",
    "moment_time",
    "pick_for_prompt",
    "replace_citations",
    "stretch_label",
    "top_tags",
]

CAPTION_CHARS = 160  # a caption's share of a prompt line: room for many moments in a context
_GROUP = re.compile(r"\[\s*(\d+(?:\s*(?:[,;]|-|–|and)\s*\d+)*)\s*\]")
_NUMBER_OR_RANGE = re.compile(r"(\d+)\s*(?:(?:-|–)\s*(\d+))?")
_MOST_IN_RANGE = 20  # "[1-400]" is not a citation of 400 moments


class MomentLike(Protocol):
    """What a moment must have to be shown to the LLM (`Moment` has it)."""

    stream: str
    media_time: float
    wall_time: float
    caption: str | None
    tags: tuple[tuple[str, float], ...]
    alerts: tuple[str, ...]
    media_path: str | None


M = TypeVar("M", bound=MomentLike)


def moment_time(moment: MomentLike, *, dated: bool = False) -> str:
    """When the moment was: media time in a file ("0:01:05.2"), else the local clock time
    ("12:03:04", with `dated` "2024-05-01 12:03:04")."""
    if moment.media_path is not None:
        return format_time(moment.media_time)
    clock = dt.datetime.fromtimestamp(moment.wall_time)
    return clock.strftime("%Y-%m-%d %H:%M:%S" if dated else "%H:%M:%S")


def moment_label(moment: MomentLike, *, dated: bool = False) -> str:
    """The moment for a reader: "door @ 12:03:04"."""
    return f"{moment.stream} @ {moment_time(moment, dated=dated)}"


def moment_line(number: int, moment: MomentLike, *, dated: bool = False, tags: int = 3) -> str:
    """One numbered line of a prompt: `[n] stream @ time: caption; tags: ...; alerts: ...`."""
    caption = " ".join((moment.caption or "no caption").split())
    if len(caption) > CAPTION_CHARS:
        caption = caption[: CAPTION_CHARS - 1].rsplit(" ", 1)[0] + "…"
    parts = [f"[{number}] {moment_label(moment, dated=dated)}: {caption}"]
    labels = [label for label, _ in moment.tags[:tags]]
    if labels:
        parts.append("tags: " + ", ".join(labels))
    if moment.alerts:
        parts.append("alerts: " + ", ".join(moment.alerts))
    return "; ".join(parts)


def stretch_label(summary: Any) -> str:
    """A summary's stretch for a reader: "door, 2024-05-01 12:00 to 12:10" for a live
    stream's window, "talk, 0:00:00.0 to 0:12:30.0" for a file."""
    if summary.media_path is not None:
        media = f"{format_time(summary.start_media)} to {format_time(summary.end_media)}"
        return f"{summary.stream}, {media}"
    start = dt.datetime.fromtimestamp(summary.start_wall)
    end = dt.datetime.fromtimestamp(summary.end_wall)
    return f"{summary.stream}, {start:%Y-%m-%d %H:%M} to {end:%H:%M}"


def cited_numbers(text: str, count: int) -> tuple[int, ...]:
    """The moment numbers `text` cites, in order of first citation, only those from 1 to
    `count` (the moments the prompt listed)."""
    found: dict[int, None] = {}
    for match in _GROUP.finditer(text):
        for number in _numbers(match[1]):
            if 1 <= number <= count:
                found.setdefault(number)
    return tuple(found)


def replace_citations(text: str, labels: Mapping[int, str]) -> str:
    """`text` with each citation group replaced by the labels of the moments it cites
    (`[2, 5]` → `[door @ 12:03:04; door @ 12:07:40]`); numbers without a label are dropped,
    and a group left empty is removed with the space before it."""

    def replace(match: re.Match[str]) -> str:
        known = [labels[n] for n in dict.fromkeys(_numbers(match[1])) if n in labels]
        return f"[{'; '.join(known)}]" if known else ""

    replaced = _GROUP.sub(replace, text)
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", replaced)).strip()


def top_tags(moments: Sequence[MomentLike], count: int = 5) -> list[str]:
    """The labels that scored most over `moments` (scores summed), best first."""
    totals: Counter[str] = Counter()
    for moment in moments:
        for label, score in moment.tags:
            totals[label] += float(score)
    return [label for label, _ in totals.most_common(count)]


def pick_for_prompt(moments: Sequence[M], limit: int) -> list[M]:
    """At most `limit` of `moments`, in time order: every alert's moment first (up to the
    limit), the rest spread evenly over the span, so a long window fits a small context."""
    if len(moments) <= limit:
        return list(moments)
    chosen = [i for i, m in enumerate(moments) if m.alerts][:limit]
    others = [i for i in range(len(moments)) if i not in set(chosen)]
    room = limit - len(chosen)
    if room > 0 and others:
        step = len(others) / room
        chosen += [others[int(j * step)] for j in range(room)]
    return [moments[i] for i in sorted(set(chosen))]


def _numbers(group: str) -> list[int]:
    numbers: list[int] = []
    for start, end in _NUMBER_OR_RANGE.findall(group):
        first = int(start)
        last = int(end) if end else first
        if end and not 0 <= last - first < _MOST_IN_RANGE:
            last = first
        numbers.extend(range(first, last + 1))
    return numbers
