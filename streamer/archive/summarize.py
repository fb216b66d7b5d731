"""Asking the LLM for a summary of a stretch of a stream: the prompt, and the summary made of
its answer.

The prompt gives the stretch (stream, span), the tags seen most and the alerts, then the
stretch's moments numbered (`streamer.archive.evidence`; at most `PROMPT_MOMENTS`, every alert
first, the rest spread over the span), and asks for a few sentences citing `[n]`. The answer's
citations of listed moments become the summary's `cited` moments and are written out in its
text; others are dropped.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamer.archive.evidence import (
    MomentLike,
    cited_numbers,
    moment_label,
    moment_line,
    pick_for_prompt,
    replace_citations,
    top_tags,
)
from streamer.archive.summaries import Chapter, MomentRef, Summary
from streamer.llm.prompts import format_time

__all__ = ["PROMPT_MOMENTS", "SYSTEM_PROMPT", "Stretch", "summarise", "summary_prompt"]

PROMPT_MOMENTS = 24  # numbered lines at most: with the answer, fits a 2048-token context
SUMMARY_TOKENS = 220
SYSTEM_PROMPT = (
    "You summarise what a camera or a video showed, for someone who was not watching. Use only "
    "the numbered moments you are given. Write two to four short plain sentences: no lists, no "
    "markdown, no preamble. After each sentence cite the moments it is based on as [n], for "
    "example [2] or [3, 5]."
)


@dataclass(frozen=True)
class Stretch:
    """The stretch of a stream a summary is about.

    Attributes:
        stream: the stream's name.
        kind: "window" (a live stream's last `--summary-every`) or "file" (a whole file).
        start_wall, end_wall: the stretch in wall time, epoch seconds.
        start_media, end_media: the stretch in the stream's time, seconds.
        media_path: a file's path; None for a live stream.
    """

    stream: str
    kind: str
    start_wall: float
    end_wall: float
    start_media: float
    end_media: float
    media_path: str | None = None


def summary_prompt(stretch: Stretch, moments: Sequence[MomentLike]) -> str:
    """The user message asking for a summary of `moments` (already chosen and in order)."""
    if stretch.media_path is not None:
        span = f"{format_time(stretch.start_media)} to {format_time(stretch.end_media)}"
        head = f'The video file "{stretch.stream}", {span}.'
    else:
        start, end = (_clock(stretch.start_wall), _clock(stretch.end_wall))
        head = f'The camera stream "{stretch.stream}", from {start} to {end}.'
    lines = [head]
    tags = top_tags(moments, 5)
    if tags:
        lines.append("Seen most: " + ", ".join(tags) + ".")
    alerts = Counter(name for m in moments for name in m.alerts)
    if alerts:
        lines.append("Alerts: " + ", ".join(f"{n} ({c}×)" for n, c in alerts.items()) + ".")
    lines.append("Moments:")
    lines += [moment_line(n, m) for n, m in enumerate(moments, 1)]
    lines.append("Write the summary, citing the moments as [n].")
    return "\n".join(lines)


async def summarise(
    client: Any,
    stretch: Stretch,
    moments: Sequence[MomentLike],
    *,
    chapters: Sequence[Chapter] = (),
    limit: int = PROMPT_MOMENTS,
) -> Summary:
    """Ask the LLM for a summary of `moments` (of one stream, in time order).

    Args:
        client: the `LlmClient`.
        stretch: what the summary is about.
        moments: the stretch's moments.
        chapters: a file's chapters, kept with its summary.
        limit: moments listed in the prompt at most.

    Returns:
        The summary, citing the listed moments its answer cited.

    Raises:
        LlmError: no answer (the server is down, refused the request, or answered nothing).
    """
    shown = pick_for_prompt(moments, limit)
    answer = await client.complete(
        SYSTEM_PROMPT, summary_prompt(stretch, shown), max_tokens=SUMMARY_TOKENS
    )
    numbers = cited_numbers(answer, len(shown))
    labels = {n: moment_label(m) for n, m in enumerate(shown, 1)}
    cited = [shown[n - 1] for n in numbers]
    info = getattr(client, "info", None)
    return Summary(
        stream=stretch.stream,
        kind=stretch.kind,
        start_wall=stretch.start_wall,
        end_wall=stretch.end_wall,
        start_media=stretch.start_media,
        end_media=stretch.end_media,
        text=replace_citations(answer, labels),
        cited=tuple(MomentRef(m.stream, m.media_time, m.wall_time) for m in cited),
        model=info.model if info is not None else None,
        made_at=time.time(),
        chapters=tuple(chapters),
        media_path=stretch.media_path,
    )


def _clock(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall).strftime("%H:%M:%S")
