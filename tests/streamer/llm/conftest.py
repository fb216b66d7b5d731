"""Fixtures for the LLM client tests: the LM Studio double, a session, a stepped clock, and the
real llama-cpp-python server (from `tests/servers/llm_server.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from servers.llm_server import llm_server  # noqa: F401  (the session fixture, re-exported)

from bench.harness.lmstudio import LmStudioDouble
from streamer.llm import LlmClient, LlmConfig


class FakeTime:
    """A clock the tests step; `sleep` advances it instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def double() -> AsyncIterator[LmStudioDouble]:
    """A running LM Studio double (0.4 flavour) with a vision model loaded."""
    server = LmStudioDouble()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(session, fake_time) -> Callable[..., tuple[LlmClient, list[tuple[object, str]]]]:
    """`make_client(url, **config)` → (client on the fake clock, its state changes list)."""

    def make(url: str, *, rng: Callable[[], float] = lambda: 0.5, **config) -> tuple:
        config.setdefault("read_timeout", 2.0)
        config.setdefault("first_request_timeout", 2.0)
        client = LlmClient(
            LlmConfig(url=url, **config), session, clock=fake_time, sleep=fake_time.sleep, rng=rng
        )
        changes: list[tuple[object, str]] = []
        client.on_state_change = lambda state, detail: changes.append((state, detail))
        return client, changes

    return make
