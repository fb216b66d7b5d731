"""Fixtures of the web viewer tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bench.harness.lmstudio import LmStudioDouble


@pytest.fixture
async def double() -> AsyncIterator[LmStudioDouble]:
    """A running LM Studio double whose answers are numbered ("Caption number N."), so a
    test can tell one caption from the next."""
    server = LmStudioDouble(answer=lambda body, count: f"Caption number {count}.")
    await server.start()
    yield server
    await server.stop()
