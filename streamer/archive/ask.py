"""Questions about an archive, answered by the LLM from retrieved evidence, with citations.

    question ─► hybrid search (`Archive.search`): the k best moments
             └► the summaries around them (their stretch holds a hit, or shares the question's
                words), at most `MOST_SUMMARIES`
    prompt:  the moments numbered `[n] stream @ time: caption; tags; alerts`, the summaries,
             the question, and the rule: cite `[n]` for every claim
    answer:  its citations of listed moments are kept (`Answer.citations`), others dropped;
             `Answer.render()` writes each `[n]` out as `[stream @ time]`

Without an LLM (or with its server down) the answer has no text, says why in `error`, and
still carries the moments and summaries that were found: the caller shows those.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamer.archive.evidence import (
    cited_numbers,
    moment_label,
    moment_line,
    replace_citations,
    stretch_label,
)
from streamer.archive.summaries import Summary
from streamer.errors import ConfigError, LlmError

if TYPE_CHECKING:
    from streamer.archive.search import Hit

__all__ = ["Answer", "Citation", "ask", "ask_async", "ask_prompt", "related_summaries"]

MOST_SUMMARIES = 3
ANSWER_TOKENS = 300
SYSTEM_PROMPT = (
    "You answer questions about recorded video, using only the numbered moments and the "
    "summaries given. Each moment is one point in time: its caption, its tags and its alerts. "
    "Answer in a few plain sentences. Cite the moment behind every claim as [n], for example "
    "[2] or [1, 4]. If the moments do not answer the question, say so."
)
_WORD = re.compile(r"[^\W_]{3,}")
_COMMON = frozenset({
    "the", "and", "was", "did", "does", "what", "when", "where", "who", "why", "how", "are",
    "were", "has", "have", "had", "with", "from", "into", "that", "this", "there", "they",
    "them", "then", "than", "for", "any", "all", "not", "but", "its", "his", "her", "you",
})  # fmt: skip


@dataclass(frozen=True)
class Citation:
    """A moment the answer cites.

    Attributes:
        number: its number in the prompt (`Answer.hits[number - 1]`).
        stream: its stream.
        wall_time: when it was seen, epoch seconds.
        media_time: its time in the stream, seconds.
    """

    number: int
    stream: str
    wall_time: float
    media_time: float


@dataclass(frozen=True)
class Answer:
    """The answer to a question, with its evidence.

    Attributes:
        question: the question, stripped.
        text: the LLM's answer, citing moments as `[n]`; None when there is none.
        hits: the moments retrieved, numbered from 1 in the prompt.
        summaries: the summaries retrieved with them.
        citations: the retrieved moments the answer cites, in order of first citation.
        error: why there is no answer (no LLM asked, the server down, nothing found); None
            when there is one.
    """

    question: str
    text: str | None
    hits: tuple[Hit, ...]
    summaries: tuple[Summary, ...]
    citations: tuple[Citation, ...]
    error: str | None

    def label(self, number: int) -> str:
        """Moment `number` for a reader: "door @ 2024-05-01 12:03:04"."""
        return moment_label(self.hits[number - 1].moment, dated=True)

    def render(self) -> str | None:
        """The answer for a reader: each `[n]` written out as `[stream @ time]`, citations of
        moments that were not retrieved dropped; None when there is no answer."""
        if self.text is None:
            return None
        labels = {n: self.label(n) for n in range(1, len(self.hits) + 1)}
        return replace_citations(self.text, labels)


def ask(archive: Any, question: str, **options: Any) -> Answer:
    """`ask_async` run to its end (not from inside a running event loop).

    Args:
        archive: the `Archive`.
        question: what to answer.
        options: `llm`, `k`, `stream`, `since`, `until` (as `ask_async`).
    """
    return asyncio.run(ask_async(archive, question, **options))


async def ask_async(
    archive: Any,
    question: str,
    *,
    llm: Any = None,
    client: Any = None,
    k: int = 8,
    stream: str | None = None,
    since: float | str | dt.datetime | None = None,
    until: float | str | dt.datetime | None = None,
    offload: Callable[..., Awaitable[Any]] = asyncio.to_thread,
) -> Answer:
    """Retrieve the evidence for `question` and ask the LLM, citing it.

    Args:
        archive: the `Archive` to answer from.
        question: what to answer, in words.
        llm: the server (`LlmConfig`); a client is made for this question.
        client: an `LlmClient` to ask instead (one a running viewer holds); wins over `llm`.
        k: moments retrieved.
        stream, since, until: only moments (and summaries) of this stream and span.
        offload: how the search runs off the event loop (`asyncio.to_thread`; the viewer
            gives its own low-priority threads).

    Returns:
        The answer; with no LLM, or an LLM that fails, its `text` is None and `error` says why.

    Raises:
        ConfigError: an empty question or a bad filter.
        ArchiveError: the index cannot be read.
    """
    text = (question or "").strip()
    if not text:
        raise ConfigError(
            'a question needs words, e.g. streamer ask "when did the van arrive?" --archive DIR'
        )
    hits, summaries = await offload(_retrieve, archive, text, k, stream, since, until)
    found: dict[str, Any] = {"question": text, "hits": tuple(hits), "summaries": tuple(summaries)}
    if client is None and llm is None:
        return Answer(**found, text=None, citations=(), error="no LLM was asked (--no-llm)")
    if not hits and not summaries:
        return Answer(**found, text=None, citations=(),
                      error="nothing in the archive matches the question")  # fmt: skip
    prompt = ask_prompt(text, hits, summaries)
    try:
        answer = await _complete(client, llm, prompt)
    except LlmError as exc:
        return Answer(**found, text=None, citations=(), error=str(exc))
    citations = tuple(
        Citation(n, m.stream, m.wall_time, m.media_time)
        for n, m in ((n, hits[n - 1].moment) for n in cited_numbers(answer, len(hits)))
    )
    return Answer(**found, text=answer, citations=citations, error=None)


async def _complete(client: Any, llm: Any, prompt: str) -> str:
    if client is not None:
        return await client.complete(SYSTEM_PROMPT, prompt, max_tokens=ANSWER_TOKENS)
    import aiohttp

    from streamer.llm import LlmClient

    async with aiohttp.ClientSession() as session:
        own = LlmClient(llm, session)
        return await own.complete(SYSTEM_PROMPT, prompt, max_tokens=ANSWER_TOKENS)


def _retrieve(
    archive: Any, question: str, k: int, stream: str | None, since: Any, until: Any
) -> tuple[list[Hit], list[Summary]]:
    hits = archive.search(question, stream=stream, since=since, until=until, k=k)
    candidates = archive.summaries(stream=stream, since=since, until=until, limit=500)
    return hits, related_summaries(question, hits, candidates)


def related_summaries(
    question: str, hits: list[Hit], candidates: list[Summary], most: int = MOST_SUMMARIES
) -> list[Summary]:
    """The summaries worth giving the LLM with the hits, in time order: those whose stretch
    holds a hit count most, then those sharing the question's words.

    Args:
        question: the question.
        hits: the moments retrieved.
        candidates: the summaries of the question's stream and span.
        most: how many at most.
    """
    words = {w for w in _WORD.findall(question.lower()) if w not in _COMMON}

    def score(summary: Summary) -> int:
        held = sum(
            hit.moment.stream == summary.stream
            and summary.start_wall <= hit.moment.wall_time <= summary.end_wall
            for hit in hits
        )
        shared = len(words & set(_WORD.findall(summary.text.lower())))
        return 2 * held + shared

    scored = [(score(s), i) for i, s in enumerate(candidates)]
    best = sorted((pair for pair in scored if pair[0] > 0), reverse=True)[:most]
    return [candidates[i] for _, i in sorted(best, key=lambda pair: pair[1])]


def ask_prompt(question: str, hits: list[Hit], summaries: list[Summary]) -> str:
    """The user message: the numbered moments, the summaries, and the question."""
    lines = ["Moments:"]
    lines += [moment_line(n, hit.moment, dated=True) for n, hit in enumerate(hits, 1)]
    if not hits:
        lines.append("(none found)")
    if summaries:
        lines.append("Summaries:")
        lines += [f"- {stretch_label(s)}: {' '.join(s.text.split())}" for s in summaries]
    lines += [f"Question: {question}", "Answer, citing the moments as [n]:"]
    return "\n".join(lines)
