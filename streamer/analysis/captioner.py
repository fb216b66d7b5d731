"""When to caption, and the caption built from tags.

The schedule runs on media time: a stream gets a caption at its first analysed frame, when the
scene score crosses the threshold (no sooner than `min_interval` after the last one), and when
the last caption is older than `max_age`. The text comes from an LLM server (`LlmCaptioner`),
or, with none, from the zero-shot tags, marked as such.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import ClassVar

from streamer.core.checks import float_at_least, float_in
from streamer.core.frame import Annotation, Caption
from streamer.core.options import Option, Ordered, option, validate
from streamer.llm import CaptionClient, CaptionRequest, LlmError

SECONDS = "seconds"


@dataclass(frozen=True, slots=True)
class CaptionPolicy:
    """Caption timing, in media seconds.

    Attributes:
        min_interval: least time between two captions of a stream.
        max_age: a caption older than this is refreshed even without a scene change.
        scene_threshold: scene score (cosine distance, 0..2) that counts as a scene change.
    """

    min_interval: float = option(
        2.0,
        Option(
            "--caption-interval",
            "least seconds between two caption points of a stream",
            float_at_least(0, SECONDS),
        ),
    )
    max_age: float = option(
        10.0,
        Option("--caption-max-age", "refresh a caption after this many seconds, "
               "≥ --caption-interval (inf: never)", float_at_least(0, SECONDS, allow_inf=True)),
    )  # fmt: skip
    scene_threshold: float = option(
        0.15,
        Option("--scene-threshold", "cosine distance that counts as a new scene",
               float_in(0, 2, "a cosine distance", low_open=True)),
    )  # fmt: skip

    RULES: ClassVar = (Ordered("max_age", "≥", "min_interval"),)

    def __post_init__(self) -> None:
        validate(self)


class CaptionSchedule:
    """Decides, per stream and in media time, whether an analysed frame gets a caption."""

    def __init__(self, policy: CaptionPolicy) -> None:
        self.policy = policy
        self._last: dict[str, float] = {}

    def due(self, annotation: Annotation) -> bool:
        """True when `annotation`'s frame should be captioned; records it when so."""
        last = self._last.get(annotation.stream)
        # Time that went back is another stream of the name (its times start at 0 again; the
        # removed one's last analyses may come in after it was forgotten): it starts afresh.
        if last is not None and annotation.pts >= last:
            age = annotation.pts - last
            changed = annotation.scene_score >= self.policy.scene_threshold
            if not (age >= self.policy.max_age or (changed and age >= self.policy.min_interval)):
                return False
        self._last[annotation.stream] = annotation.pts
        return True

    def forget(self, stream: str) -> None:
        """Drop `stream`'s last caption time: a stream added again under its name starts its
        times at 0, and would wait as long as the earlier one ran for its first caption."""
        self._last.pop(stream, None)


def tag_caption_text(annotation: Annotation) -> str:
    """A one-line caption from tags, e.g. "Looks like: a dog, grass, a park"."""
    if not annotation.tags:
        return "No tags: this encoder has no text tower (use a CLIP encoder for tags)."
    return "Looks like: " + ", ".join(tag.label for tag in annotation.tags)


def tag_caption(annotation: Annotation) -> Caption:
    """The caption the tags of `annotation` give."""
    return Caption(annotation.stream, annotation.frame_index, annotation.pts,
                   tag_caption_text(annotation), "tags")  # fmt: skip


def near_duplicate(a: str, b: str, threshold: float = 0.9) -> bool:
    """Whether two captions say the same thing (case, punctuation and small edits aside)."""
    words_a, words_b = _words(a), _words(b)
    if words_a == words_b:
        return True
    return difflib.SequenceMatcher(None, words_a, words_b).ratio() >= threshold


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


class LlmCaptioner:
    """Asks the LLM for captions without ever holding up the video.

    Files get one request per caption point, in media order, and a future the output waits
    on (bounded by the run's caption wait). Live streams get at most `max_in_flight` requests
    each; a caption point that comes while they are busy waits as the stream's one candidate,
    replaced by any newer one, and the answer shows from when it arrives. A failed request
    (server down, breaker open, bad answer) falls back to the caption from tags, and so does a
    live caption point that finds the stream's requests out for longer than `slow_after` (a
    server that took them and does not answer): the caption does not go stale meanwhile.

    Args:
        client: the LLM client (shared by every stream).
        max_in_flight: requests per live stream at once.
        spawn: starts a task inside the run's TaskGroup.
        slow_after: seconds a live stream's oldest request may be out before its caption
            points get the tags' caption (the LLM's answer still shows when it comes).
        clock: monotonic seconds (for tests).
    """

    def __init__(
        self, client: CaptionClient, max_in_flight: int,
        spawn: Callable[[Coroutine], asyncio.Task], slow_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        if max_in_flight < 1:
            raise ValueError(
                f"llm max_in_flight must be ≥ 1, got {max_in_flight} (--llm-max-in-flight)"
            )
        self.client = client
        self.max_in_flight = max_in_flight
        self._spawn = spawn
        self.slow_after = slow_after
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._sent: dict[str, list[float]] = {}  # when each live request out now was sent
        self._candidate: dict[str, tuple] = {}
        self._tasks: set[asyncio.Task] = set()

    def _start(self, coro: Coroutine) -> None:
        task = self._spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        """Cancel the requests still out (the run is ending) and forget the candidates."""
        self._candidate.clear()
        for task in list(self._tasks):
            task.cancel()

    def for_file(self, request: CaptionRequest, annotation: Annotation) -> asyncio.Future:
        """Request now; the future gets the `Caption` (LLM, or tags when the LLM failed)."""
        future = asyncio.get_running_loop().create_future()

        async def fill() -> None:
            caption = await self._ask(request, annotation)
            if not future.done():
                future.set_result(caption)

        self._start(fill())
        return future

    def for_live(
        self, request: CaptionRequest, annotation: Annotation,
        deliver: Callable[[Caption], None], now: Callable[[], float],
    ) -> None:  # fmt: skip
        """Request when the stream has room, else keep it as the stream's newest candidate;
        `deliver` gets the caption, timed `now()` (when it arrived)."""
        stream = annotation.stream
        if self._in_flight.get(stream, 0) >= self.max_in_flight:
            self._candidate[stream] = (request, annotation, deliver, now)
            sent = self._sent.get(stream)
            if sent and self._clock() - min(sent) > self.slow_after:
                deliver(replace(tag_caption(annotation), pts=now()))
            return
        self._in_flight[stream] = self._in_flight.get(stream, 0) + 1
        self._start(self._live(request, annotation, deliver, now))

    async def _live(self, request, annotation, deliver, now) -> None:
        sent = self._sent.setdefault(annotation.stream, [])
        mark = self._clock()
        sent.append(mark)
        try:
            caption = await self._ask(request, annotation)
            deliver(replace(caption, pts=now()))
        finally:
            sent.remove(mark)
            self._in_flight[annotation.stream] -= 1
            waiting = self._candidate.pop(annotation.stream, None)
            if waiting is not None:
                self.for_live(*waiting)

    async def _ask(self, request: CaptionRequest, annotation: Annotation) -> Caption:
        try:
            text = await self.client.caption(request)
        except LlmError:
            # Reported once per state change by the client's owner; the video goes on with
            # the caption the tags give.
            return tag_caption(annotation)
        return Caption(annotation.stream, annotation.frame_index, annotation.pts, text, "llm")
