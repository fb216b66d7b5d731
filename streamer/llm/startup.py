"""How a run opens its LLM client: one startup probe, the outcome said once, and the client's
later state changes logged once each (the client itself only logs at DEBUG)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from streamer.core.redact import redact
from streamer.errors import LlmError
from streamer.llm.client import LlmClient
from streamer.llm.config import LlmConfig
from streamer.llm.health import LlmState
from streamer.llm.probe import ServerInfo, find_model

if TYPE_CHECKING:
    import aiohttp

__all__ = ["client_session", "new_client", "open_llm_client", "preload", "report_llm_state"]

log = logging.getLogger("streamer")

WAIT_NOTICE_S = 3.0  # a probe unanswered this long is said to be waited for


def preload() -> None:
    """Import aiohttp now, ~80 ms (it builds two TLS contexts): a run calls this while its
    encoder loads on another thread, so the client does not wait for it later."""
    import aiohttp  # noqa: F401


def client_session() -> aiohttp.ClientSession:
    """A new HTTP session for a run's LLM client; the caller closes it."""
    import aiohttp

    return aiohttp.ClientSession()


def new_client(config: LlmConfig, session: aiohttp.ClientSession) -> LlmClient:
    """A run's LLM client, not probed yet, whose state changes are logged."""
    client = LlmClient(config, session)
    was = client.state

    def report(state: LlmState, detail: str) -> None:
        nonlocal was
        report_llm_state(state, detail, client.state_cause, was=was)
        was = state

    client.on_state_change = report
    return client


async def open_llm_client(
    config: LlmConfig, session: aiohttp.ClientSession, *, live: bool,
    client: LlmClient | None = None,
) -> LlmClient | None:  # fmt: skip
    """A run's LLM client after its startup probe (its state changes logged), or None.

    A file-only run (`live` False) with no reachable server goes on with tags for the whole
    run (the same captions every run); a live run keeps the client, whose breaker retries now
    and then. A probe still unanswered after `WAIT_NOTICE_S` says what it waits for.

    Args:
        config, session: the client's settings and HTTP session.
        live: the run has a live stream.
        client: the client to probe (default: a new one).
    """
    client = client or new_client(config, session)
    notice = asyncio.get_running_loop().call_later(WAIT_NOTICE_S, _say_waiting, config, live)
    try:
        info = await client.probe()
    except LlmError as exc:
        if not live:
            log.warning("no LLM captions: %s\n→ captions come from the tags for this run", exc)
            return None
        log.warning("LLM not available yet: %s\n→ captions from tags until it answers", exc)
        return client
    finally:
        notice.cancel()
    if info.model is None:
        log.warning("LLM at %s: %s\n→ captions from tags until it has one", redact(config.url),
                    info.problem)  # fmt: skip
        return client
    _check_listed(config.model, info)
    vision = ("sees images" if info.vision else "text only: captions from tags and time; "
              "a vision model (one that takes images) would caption what it sees")  # fmt: skip
    log.info("LLM: %s at %s, model %s (%s)", info.kind, redact(config.url), info.model, vision)
    return client


def _check_listed(wanted: str | None, info: ServerInfo) -> None:
    """Warn when --llm-model names no model the server lists: some servers answer any name
    with the model they have (llama.cpp's), others refuse it at the first caption."""
    if wanted is None or not info.models or find_model(info.models, wanted) is not None:
        return
    listed = ", ".join(m.id for m in info.models[:8]) + (", …" if len(info.models) > 8 else "")
    log.warning("the LLM server lists no model %r (it lists: %s); it may take it as an alias "
                "or answer with the model it has: check --llm-model", wanted, listed)  # fmt: skip


def _say_waiting(config: LlmConfig, live: bool) -> None:
    cold = max(config.first_request_timeout, config.read_timeout)
    goes_on = ("the video goes on, captions from tags meanwhile" if live
               else "the file's captions wait for it; --no-llm runs without")  # fmt: skip
    log.warning("waiting for the LLM server at %s to answer (up to %.0f s: it may be loading "
                "its model); %s", redact(config.url), cold, goes_on)  # fmt: skip


def report_llm_state(
    state: LlmState, detail: str, cause: str | None = None, was: LlmState | None = None
) -> None:
    """Log a change of the LLM client's state: a warning with its cause when it went wrong,
    else info ("LLM back: …" after it was down or in error).

    Args:
        state, detail: the new state and its overlay text.
        cause: what made it change (an error's text), if known.
        was: the state before.
    """
    if state in (LlmState.OK, LlmState.NO_VISION):
        back = "LLM back: " if was in (LlmState.DOWN, LlmState.ERROR) else ""
        log.info("%s%s", back, detail)
    else:
        log.warning("%s%s", detail, f": {cause}" if cause else "")
