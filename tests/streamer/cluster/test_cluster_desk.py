"""The LLM desk's shard side without a cluster: what crosses, and a desk that is gone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from ray.exceptions import RayActorError

from streamer.cluster.desk import DeskClient, DeskView
from streamer.errors import LlmUnavailableError
from streamer.llm import CaptionRequest, LlmConfig, LlmState, LlmStats

FRAME = np.full((720, 1280, 3), (30, 160, 60), np.uint8)
OK = DeskView(LlmState.OK, "LLM ok", LlmStats())


class _Method:
    def __init__(self, answer):
        self.answer = answer
        self.sent: list[tuple] = []

    def remote(self, *args):
        self.sent.append(args)
        return self.answer(*args)


class _Desk:
    """An actor handle whose `caption` answers with `answer` (a coroutine function)."""

    def __init__(self, answer) -> None:
        self.caption = _Method(answer)


def test_only_a_jpeg_of_the_client_s_size_crosses_and_the_desk_s_state_is_kept():
    async def answer(request):
        return "A green field.", None, DeskView(LlmState.SLOW, "LLM slow 6.2 s", LlmStats(1, 1))

    desk = _Desk(answer)
    client = DeskClient(desk, LlmConfig(image_long_edge=512, jpeg_quality=80), OK)
    assert asyncio.run(client.caption(CaptionRequest("cam1", 1.0, ("grass",), FRAME))) == (
        "A green field."
    )
    (sent,) = desk.caption.sent[0]
    assert sent.image is None and sent.jpeg.startswith(b"\xff\xd8")
    assert len(sent.jpeg) < 20_000  # not the 2.7 MB frame
    assert (client.state, client.state_detail, client.stats.captions) == (
        LlmState.SLOW,
        "LLM slow 6.2 s",
        1,
    )


def test_the_desk_s_error_is_raised_on_the_shard_for_the_caption_to_fall_back():
    async def answer(request):
        error = LlmUnavailableError("server down", kind="unreachable")
        return None, error, DeskView(LlmState.DOWN, "LLM down since 12:03:04", LlmStats())

    client = DeskClient(_Desk(answer), LlmConfig(), OK)
    with pytest.raises(LlmUnavailableError, match="server down"):
        asyncio.run(client.caption(CaptionRequest("cam1", 1.0, ("grass",))))
    assert client.state is LlmState.DOWN


def test_a_desk_that_is_gone_is_an_unavailable_llm_not_a_crash():
    async def answer(request):
        raise RayActorError()

    client = DeskClient(_Desk(answer), LlmConfig(), OK)
    with pytest.raises(LlmUnavailableError, match="LLM desk"):
        asyncio.run(client.caption(CaptionRequest("cam1", 1.0, ("grass",))))
