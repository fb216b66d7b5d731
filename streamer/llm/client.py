"""`LlmClient`: captions and text completions from an OpenAI-compatible server, robust to its
faults.

A call probes the server once (kind, model, vision; `probe.py`), sends one chat request (for a
caption: a JPEG and the tags for a vision model, the tags alone otherwise; for `complete`: the
caller's system and user text), retries only retryable failures with exponential backoff and
full jitter (`LlmConfig.retry`), and returns cleaned text: one paragraph for a caption, the
answer's paragraphs for a completion. A circuit breaker stops sending to a server that keeps
failing and lets one trial through every `breaker_probe_every` seconds. Time is read from the
injected clock and waited with the injected sleep, so tests step time instead of sleeping.

Example:
    >>> async with aiohttp.ClientSession() as session:  # doctest: +SKIP
    ...     client = LlmClient(LlmConfig(), session)
    ...     print(await client.probe())
    ...     text = await client.caption(CaptionRequest("cam1", 12.5, ("dog", "lawn"), frame))
    ...     answer = await client.complete("Answer briefly.", "What is a van?", max_tokens=80)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from streamer.core.background import run_in_background
from streamer.core.retry import Backoff
from streamer.errors import (
    LlmCircuitOpenError,
    LlmConfigError,
    LlmError,
    LlmInputError,
    LlmNoVisionError,
    LlmUnavailableError,
)
from streamer.llm.answers import MAX_ANSWER_CHARS, answer_text, clean_answer, clean_caption
from streamer.llm.breaker import Breaker, BreakerState, with_retries
from streamer.llm.config import LlmConfig
from streamer.llm.health import LlmState, LlmStats
from streamer.llm.images import encode_jpeg, jpeg_data_uri, probe_image
from streamer.llm.probe import ServerInfo, discover
from streamer.llm.prompts import CaptionRequest, chat_messages, render

if TYPE_CHECKING:  # aiohttp's import (~80 ms, two TLS contexts) waits for the first client
    import aiohttp

# LlmState and LlmStats: from health
__all__ = ["CaptionClient", "CaptionRequest", "LlmClient", "LlmState", "LlmStats"]

log = logging.getLogger("streamer.llm")


CONNECTING = "LLM connecting"  # the overlay before the server has answered once
_WORKING = (LlmState.OK, LlmState.SLOW, LlmState.NO_VISION)  # captions come


@runtime_checkable
class CaptionClient(Protocol):
    """What a run captions with: an `LlmClient`, or a stand-in that asks one elsewhere (a
    cluster shard's, whose requests go to its coordinator's client).

    Attributes:
        state, state_detail, stats: as `LlmClient`'s (the overlay, /api/status, /metrics).
        info: what the server's probe found (a summary names its model), None before.
    """

    state: LlmState
    state_detail: str
    stats: LlmStats
    info: ServerInfo | None

    async def caption(self, request: CaptionRequest) -> str: ...

    async def complete(
        self, system: str, user: str, *, max_tokens: int | None = None, max_chars: int = ...
    ) -> str: ...


class LlmClient:
    """Captions from one LLM server through the caller's aiohttp session.

    Args:
        config: where the server is and what to ask.
        session: an open `aiohttp.ClientSession`; the caller owns and closes it.
        clock: monotonic seconds (breaker waits, latency, SLOW).
        sleep: awaited for backoff delays.
        rng: uniform [0, 1) for the jitter.

    Attributes:
        state, state_detail: health and its overlay text ("LLM connecting" until the server
            first answers, "LLM ok", "LLM slow 6.2 s",
            "LLM down since 12:03:04", "LLM text-only", "LLM error: no model loaded").
        on_state_change: called as `(state, detail)` once per change of `state`, so a fault is
            reported once, not per request. The client itself logs only at DEBUG: reporting
            is the owner's job.
        last_error: the last error raised, with the cause and the fix in its message.
        info: what the last probe found; None until probed and after a failure.
        stats: counters for metrics.
    """

    def __init__(
        self,
        config: LlmConfig,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        from streamer.llm._http import Http, check

        self._http, self._check = Http(session, config), check
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._breaker = Breaker(config.breaker_failures, config.breaker_probe_every, clock)
        self.state = LlmState.OK
        self.state_detail = CONNECTING  # until the server first answers
        self.state_cause: str | None = None  # why the state last changed (an error's text)
        self.on_state_change: Callable[[LlmState, str], None] | None = None
        self.last_error: LlmError | None = None
        self.info: ServerInfo | None = None
        self.stats = LlmStats()
        self._vision: dict[str, tuple[bool, str]] = {}  # learned per model, wins over metadata
        self._warm: set[str] = set()  # models that answered: no JIT load ahead, short timeout
        self._slots = asyncio.Semaphore(1)  # one at a time until the probe says more
        self._slot_count = 1
        self._probe_lock = asyncio.Lock()

    @property
    def breaker_state(self) -> BreakerState:
        """The circuit breaker's state (closed, open, half-open)."""
        return self._breaker.state

    # -- probe ---------------------------------------------------------------------------------

    async def probe(self) -> ServerInfo:
        """Ask the server what it is and settle the model and its vision (cached per model).

        Returns:
            What was found. `info.model` is None (and the state ERROR) when no model can be
            chosen; `info.problem` says why.

        Raises:
            LlmUnavailableError: the server cannot be reached (state DOWN).
            LlmConfigError: wrong URL or API key (state ERROR).
        """
        try:
            async with self._probe_lock:
                info = await self._probe()
        except LlmUnavailableError as exc:
            self._breaker.failure()
            self._failed(exc)
            raise
        except LlmError as exc:
            self._breaker.success()
            self._failed(exc)
            raise
        self._breaker.success()
        if info.model is None:
            self._set_state(LlmState.ERROR, "LLM error: no model loaded", info.problem)
        else:
            self._answered(0.0)
        return info

    async def _probe(self, vision: bool = True) -> ServerInfo:
        info = await discover(self._http, self.config.model)
        if info.model is not None and vision:
            info = await self._settle_vision(info, info.model)
        if info.parallel != self._slot_count:
            # Requests holding a slot keep the old semaphore; the new one bounds new requests.
            self._slots = asyncio.Semaphore(info.parallel)
            self._slot_count = info.parallel
        self.info = info
        return info

    async def _settle_vision(self, info: ServerInfo, model: str) -> ServerInfo:
        if model in self._vision:
            vision, source = self._vision[model]
        elif self.config.vision is not None:
            vision, source = self.config.vision, "config"
        elif info.vision is not None:
            return info
        else:
            vision, source = await self._image_probe(model), "image probe"
            self._vision[model] = (vision, source)
        return replace(info, vision=vision, vision_source=source)

    async def _image_probe(self, model: str) -> bool:
        """Send one 16x16 JPEG: a model that answers takes images."""
        uri = jpeg_data_uri(encode_jpeg(probe_image()))
        try:
            await self._chat(model, "Reply with one word.", "What colour is this?", uri, 1)
        except LlmError as exc:
            # No answer (the server is down) or a setup fault (unknown model, no key) says
            # nothing about images.
            if exc.status is None or isinstance(exc, LlmConfigError):
                raise
            # Any refusal of a 16x16 JPEG (llama-cpp-python's 500, LM Studio's 200 "does not
            # support images", a 400) means images will not work with this model.
            log.debug("LLM %s takes no images: %s", model, exc)
            return False
        return True

    # -- caption -------------------------------------------------------------------------------

    async def caption(self, request: CaptionRequest) -> str:
        """One caption for `request`.

        Returns:
            One paragraph of plain text, at most 300 characters.

        Raises:
            LlmUnavailableError: unreachable, timed out, or failing after the retries; at once
                (`LlmCircuitOpenError`, nothing sent) while the breaker is open.
            LlmConfigError: no model loaded, unknown model, bad API key, wrong URL.
            LlmInputError: the server refused this request (context overflow, bad image), or
                answered with no text (kind "empty_answer").
        """
        text = await self._call(lambda: self._attempt(request), judge_speed=True)
        self.stats.captions += 1
        return text

    async def complete(
        self,
        system: str,
        user: str,
        *,
        max_tokens: int | None = None,
        max_chars: int = MAX_ANSWER_CHARS,
    ) -> str:
        """One text completion: the model's answer to `user` under the instructions `system`.

        Goes through the same probe, slots, timeouts, retries and circuit breaker as a caption;
        no image is sent, so the model's vision is not probed. A long answer does not mark the
        client SLOW: that state is about captions keeping up with the video.

        Args:
            system: the system message.
            user: the user message.
            max_tokens: the answer's token budget (default: `LlmConfig.max_tokens`), 1 to 4096.
            max_chars: the cleaned answer is cut to this many characters.

        Returns:
            The answer as plain text: reasoning blocks, escape sequences and invisible
            characters removed, paragraphs kept, at most `max_chars` characters.

        Raises:
            LlmUnavailableError, LlmConfigError: as `caption`.
            LlmInputError: the server refused the request (a context overflow), or the answer
                held no text (kind "empty_answer").
        """
        if max_tokens is not None and not 1 <= max_tokens <= 4096:
            raise LlmInputError(
                f"max_tokens must be 1 to 4096, got {max_tokens}", kind="bad_request"
            )

        async def attempt() -> str:
            model = _model_of(await self._ensure_probed(vision=False))
            answer = await self._chat(model, system, user, None, max_tokens)
            return clean_answer(answer, max_chars)

        text = await self._call(attempt, judge_speed=False)
        self.stats.completions += 1
        return text

    async def _call(self, attempt: Callable[[], Awaitable[str]], *, judge_speed: bool) -> str:
        """Run `attempt` with retries; count a failure and report the state either way."""
        start = self._clock()
        backoff = Backoff(self.config.retry, random=self._rng)
        # A server that takes the request and never answers is slow now, not when (if ever)
        # its answer comes: the overlay and the log say so while the caption waits.
        watch = (asyncio.get_running_loop().call_later(self.config.slow_after, self._no_answer_yet)
                 if judge_speed else None)  # fmt: skip
        try:
            text = await with_retries(attempt, self._breaker, backoff, sleep=self._sleep,
                                      stats=self.stats, refused=self._circuit_open)  # fmt: skip
        except LlmError as exc:
            self.stats.errors += 1
            self._failed(exc)
            raise
        finally:
            if watch is not None:
                watch.cancel()
        self._answered(self._clock() - start if judge_speed else None)
        return text

    def _no_answer_yet(self) -> None:
        """A caption request is still out after `slow_after` seconds."""
        if self.state in _WORKING:
            after = f"{self.config.slow_after:g}"
            self._set_state(LlmState.SLOW, f"LLM slow: no answer in {after} s{self._suffix()}")

    def _suffix(self) -> str:
        """ " (text-only)" after a SLOW state's text when the model takes no images."""
        return " (text-only)" if self.info is not None and self.info.vision is False else ""

    def _circuit_open(self) -> LlmCircuitOpenError:
        cause = f": {self.last_error.reason}" if self.last_error else ""
        return LlmCircuitOpenError(
            f"not sent: the LLM server at {self.config.url} keeps failing{cause}; the next "
            f"trial request goes in {self._breaker.retry_in():.1f} s",
            kind="circuit_open",
            reason="circuit open",
        )

    async def _attempt(self, request: CaptionRequest) -> str:
        info = await self._ensure_probed()
        model = _model_of(info)
        fields = {"tags": request.tags, "stream": request.stream, "time": request.time}
        system = render(self.config.system_prompt, **fields)
        user = render(self.config.prompt, **fields)
        if request.has_image and info.vision is not False:
            image = jpeg_data_uri(request.jpeg) if request.jpeg is not None else request.image
            try:
                return clean_caption(await self._chat(model, system, user, image))
            except LlmNoVisionError as exc:
                # Text-only after all (a model without its vision add-on or mmproj, or metadata
                # that said otherwise): remember it and send the same request without the image.
                log.debug("LLM %s refused an image; tags only from now on: %s", model, exc)
                self._learn_text_only(model)
                self.stats.fallbacks += 1
        return clean_caption(await self._chat(model, system, user, None))

    async def _ensure_probed(self, vision: bool = True) -> ServerInfo:
        """What the server is, probed once; with `vision`, the model's vision settled too (a
        text completion needs only the model, so it sends no image probe)."""
        if self.info is None or (vision and self.info.vision is None):
            async with self._probe_lock:
                if self.info is None:
                    await self._probe(vision)
                elif vision and self.info.vision is None and self.info.model is not None:
                    self.info = await self._settle_vision(self.info, self.info.model)
        assert self.info is not None
        return self.info

    def _jpeg_uri(self, image: np.ndarray) -> str:
        return jpeg_data_uri(
            encode_jpeg(image, self.config.image_long_edge, self.config.jpeg_quality)
        )

    def _learn_text_only(self, model: str) -> None:
        self._vision[model] = (False, "image error")
        if self.info is not None and self.info.model == model:
            self.info = replace(self.info, vision=False, vision_source="image error")

    async def _chat(
        self,
        model: str,
        system: str,
        user: str,
        image: np.ndarray | str | None,
        max_tokens: int | None = None,
    ) -> str:
        """One chat completion; returns the raw answer text or raises the classified error.

        `image` is a frame (encoded here as JPEG), a ready data URI, or None (text only).
        """

        def body() -> bytes:
            uri = self._jpeg_uri(image) if isinstance(image, np.ndarray) else image
            payload = {
                "model": model,
                "messages": chat_messages(system, user, uri),
                "temperature": self.config.temperature,
                "max_tokens": max_tokens or self.config.max_tokens,
                "stream": False,
            }
            return json.dumps(payload).encode()

        # With an image, the JPEG, its base64 and the JSON around it (~100 KB) are made on a
        # low-priority thread: the video's threads come first (see `streamer.core.background`).
        data = await run_in_background(body) if image is not None else body()
        # The first request may load the model (LM Studio's JIT: 15-25 s and more).
        cold = model not in self._warm
        timeout = self.config.first_request_timeout if cold else self.config.read_timeout
        url = self._http.base + "/chat/completions"
        async with self._slots:
            self.stats.requests += 1
            sent = self._clock()
            reply = await self._http.send("POST", url, read_timeout=timeout, data=data)
            latency = self._clock() - sent
        self._check(reply, f"POST {url}")
        text = answer_text(reply.body, where=f"POST {url}")
        self._warm.add(model)
        self.stats.last_latency_s = latency
        return text

    # -- state ---------------------------------------------------------------------------------

    def _answered(self, elapsed: float | None) -> None:
        """The server answered, in `elapsed` seconds (None: not to be judged for speed, which
        leaves a working state as it is)."""
        if elapsed is None and self.state in _WORKING and self.state_detail != CONNECTING:
            return
        if elapsed is not None and elapsed > self.config.slow_after:
            self._set_state(LlmState.SLOW, f"LLM slow {elapsed:.1f} s{self._suffix()}")
        elif self._suffix():
            self._set_state(LlmState.NO_VISION, "LLM text-only")
        else:
            self._set_state(LlmState.OK, "LLM ok")

    def _failed(self, exc: LlmError) -> None:
        if not isinstance(exc, LlmCircuitOpenError):  # keep the cause, not "not sent"
            self.last_error = exc
        if isinstance(exc, LlmUnavailableError):
            # Forget what the server was: it may come back with another model (or cold).
            self.info = None
            self._warm.clear()
            if self.state is not LlmState.DOWN:
                since = time.strftime("%H:%M:%S")
                self._set_state(LlmState.DOWN, f"LLM down since {since}", str(exc))
        elif isinstance(exc, LlmConfigError):
            self.info = None  # re-probe next time: the user may load a model meanwhile
            self._set_state(LlmState.ERROR, f"LLM error: {exc.reason}", str(exc))
        elif isinstance(exc, LlmInputError):
            log.debug("LLM refused one request: %s", exc)

    def _set_state(self, state: LlmState, detail: str, cause: str | None = None) -> None:
        changed = state is not self.state
        self.state = state
        self.state_detail = detail
        if not changed:
            return
        self.state_cause = cause
        # Reporting is the owner's job (`on_state_change`, `last_error`): logging it here too
        # would say every fault twice.
        log.debug("%s%s", detail, f": {cause}" if cause else "")
        if self.on_state_change is not None:
            self.on_state_change(state, detail)


def _model_of(info: ServerInfo) -> str:
    """The model to ask; LlmConfigError when the server has none to offer."""
    if info.model is None:
        raise LlmConfigError(
            info.problem or "no model to ask", kind="no_models_loaded", reason="no model loaded"
        )
    return info.model
