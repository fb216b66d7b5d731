"""The LLM desk: the one client that asks the LLM server for a cluster run's captions.

::

    shard (node 1) ─┐  CaptionRequest: stream, time, tags,       LLM desk (coordinator's node)
    shard (node 2) ─┼─ the frame as a JPEG made on the shard ──►   one LlmClient: probe, slots,
    shard (node 3) ─┘  ◄── the caption, or the error; the state    retries, circuit breaker ──► LLM

Each shard keeps what is per stream, as in one process: the caption schedule and the stream's
limit of requests in flight (`LlmCaptioner`), so a stream has one throttle wherever it runs.
No shard talks to the LLM server: only the coordinator's node must reach it, the server sees
one client (its slots are the run's, not a node's), and the client's state (ok, slow, down) is
the run's, shown and logged once by the coordinator. Only the JPEG crosses (the size and
quality the client would send, encoded on the shard where the frame is), tens of kilobytes per
caption.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from streamer.core.background import run_in_background
from streamer.errors import LlmError, LlmUnavailableError
from streamer.llm import CaptionRequest, LlmClient, LlmConfig, LlmState, LlmStats, ServerInfo
from streamer.llm.answers import MAX_ANSWER_CHARS
from streamer.llm.images import encode_jpeg
from streamer.llm.startup import open_llm_client, report_llm_state

__all__ = ["DeskClient", "DeskView", "LlmDesk", "StateLog"]

log = logging.getLogger("streamer")


@dataclass(frozen=True)
class DeskView:
    """The desk's client as status surfaces read it (what `/api/status` and `/metrics` show
    of an `LlmClient`)."""

    state: LlmState
    state_detail: str
    stats: LlmStats
    info: ServerInfo | None = None
    state_cause: str | None = None

    @classmethod
    def of(cls, client: LlmClient) -> DeskView:
        stats = dataclasses.replace(client.stats)
        return cls(client.state, client.state_detail, stats, client.info, client.state_cause)


class LlmDesk:
    """The run's LLM client, in an actor on the coordinator's node (made one by the driver).

    Args:
        config: the run's `--llm-*` options.
        live: the run has live streams (a file-only run whose server cannot be reached
            captions from tags throughout, as one process does).
    """

    def __init__(self, config: LlmConfig, live: bool) -> None:
        self._config = config
        self._live = live
        self._session: aiohttp.ClientSession | None = None
        self._client: LlmClient | None = None

    async def open(self) -> tuple[DeskView | None, list[tuple[int, str]]]:
        """Probe the server once.

        Returns:
            The client's view (None: no LLM for this run, captions from tags), and what the
            probe logged, for the driver to log where the user reads it.
        """
        said = _Said()
        logger = logging.getLogger("streamer")
        level = logger.level
        logger.addHandler(said)
        logger.setLevel(logging.INFO)  # a Ray worker's loggers pass warnings only
        try:
            self._session = aiohttp.ClientSession()
            self._client = await open_llm_client(self._config, self._session, live=self._live)
        finally:
            logger.removeHandler(said)
            logger.setLevel(level)
        if self._client is None:
            return None, said.lines
        self._client.on_state_change = None  # the driver reports changes from `view`
        return DeskView.of(self._client), said.lines

    async def caption(self, request: CaptionRequest) -> tuple[str | None, Any, DeskView]:
        """One caption: (its text, None, the view) or (None, the `LlmError`, the view)."""
        assert self._client is not None, "open() first"
        try:
            text = await self._client.caption(request)
        except LlmError as exc:
            return None, exc, DeskView.of(self._client)
        return text, None, DeskView.of(self._client)

    async def complete(
        self, system: str, user: str, max_tokens: int | None, max_chars: int
    ) -> tuple[str | None, Any, DeskView]:
        """One text completion, answered as `caption`."""
        assert self._client is not None, "open() first"
        try:
            text = await self._client.complete(
                system, user, max_tokens=max_tokens, max_chars=max_chars
            )
        except LlmError as exc:
            return None, exc, DeskView.of(self._client)
        return text, None, DeskView.of(self._client)

    def node(self) -> str:
        """The Ray node id the desk runs on (the machine that must reach the LLM server)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def view(self) -> DeskView | None:
        return DeskView.of(self._client) if self._client is not None else None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class DeskClient:
    """A shard's `CaptionClient`: each request goes to the desk.

    Args:
        desk: the desk's actor handle.
        config: the run's LLM options (the JPEG's size and quality).
        view: the desk's state when the shard started.

    Attributes:
        state, state_detail, stats, info: the desk's client's, as of its last answer (the
            overlay shows the run's LLM state; a summary names the model).
    """

    def __init__(self, desk: Any, config: LlmConfig, view: DeskView) -> None:
        self._desk = desk
        self._config = config
        self._seen(view)

    def _seen(self, view: DeskView) -> None:
        self.state, self.state_detail, self.stats = view.state, view.state_detail, view.stats
        self.info = view.info

    async def caption(self, request: CaptionRequest) -> str:
        """As `LlmClient.caption`; the frame goes as a JPEG made here."""
        if request.image is not None:
            jpeg = await run_in_background(
                encode_jpeg, request.image, self._config.image_long_edge, self._config.jpeg_quality
            )
            request = dataclasses.replace(request, image=None, jpeg=jpeg)
        return await self._answer(self._desk.caption.remote(request))

    async def complete(
        self,
        system: str,
        user: str,
        *,
        max_tokens: int | None = None,
        max_chars: int = MAX_ANSWER_CHARS,
    ) -> str:
        """As `LlmClient.complete`."""
        return await self._answer(self._desk.complete.remote(system, user, max_tokens, max_chars))

    async def _answer(self, reply: Any) -> str:
        from ray.exceptions import RayError

        try:
            text, error, view = await reply
        except RayError as exc:
            raise LlmUnavailableError(
                f"the run's LLM desk (on the coordinator's node) is gone: {type(exc).__name__}",
                kind="unreachable",
                reason="LLM desk lost",
            ) from None
        self._seen(view)
        if error is not None:
            raise error
        return text


class StateLog:
    """Logs the desk's state changes on the driver, once each (as one process logs its
    client's), from the views the coordinator reads."""

    def __init__(self, view: DeskView) -> None:
        self.state = view.state

    def saw(self, view: DeskView) -> None:
        if view.state is not self.state:
            was, self.state = self.state, view.state
            report_llm_state(view.state, view.state_detail, view.state_cause, was=was)


class _Said(logging.Handler):
    """Keeps the lines logged while the desk probes, for the driver to log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))
