"""How a run opens its LLM client: one startup probe, the outcome said once, and the client's
later state changes logged once each (the client itself only logs at DEBUG)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from streamer.core.redact import redact
from streamer.errors import LlmError
from streamer.llm.client import LlmClient
from streamer.llm.config import LlmConfig
from streamer.llm.health import LlmState

if TYPE_CHECKING:
    import aiohttp

__all__ = ["client_session", "open_llm_client", "preload", "report_llm_state"]

log = logging.getLogger("streamer")


def preload() -> None:
    """Import aiohttp now, ~80 ms (it builds two TLS contexts): a run calls this while its
    encoder loads on another thread, so the client does not wait for it later."""
    import aiohttp  # noqa: F401


def client_session() -> aiohttp.ClientSession:
    """A new HTTP session for a run's LLM client; the caller closes it."""
    import aiohttp

    return aiohttp.ClientSession()


async def open_llm_client(
    config: LlmConfig, session: aiohttp.ClientSession, *, live: bool
) -> LlmClient | None:
    """A run's LLM client after its startup probe (its state changes logged), or None.

    A file-only run (`live` False) with no reachable server goes on with tags for the whole
    run (the same captions every run); a live run keeps the client, whose breaker retries now
    and then.
    """
    client = LlmClient(config, session)
    client.on_state_change = report_llm_state
    try:
        info = await client.probe()
    except LlmError as exc:
        if not live:
            log.warning("no LLM captions: %s\n→ captions come from the tags for this run", exc)
            return None
        log.warning("LLM not available yet: %s\n→ captions from tags until it answers", exc)
        return client
    vision = "sees images" if info.vision else "text only: captions from tags and time"
    log.info("LLM: %s at %s, model %s (%s)", info.kind, redact(config.url), info.model, vision)
    return client


def report_llm_state(state: LlmState, detail: str) -> None:
    """Log a change of the LLM client's state: a warning when it went wrong, else info."""
    level = logging.INFO if state in (LlmState.OK, LlmState.NO_VISION) else logging.WARNING
    log.log(level, "%s", detail)
