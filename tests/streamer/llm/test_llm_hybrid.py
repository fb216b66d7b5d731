"""The seed `HybridPixelLLM` facade: the tiny CLIP encoder and the double."""

from __future__ import annotations

import numpy as np
import pytest

from bench.harness.lmstudio import LmStudioDouble
from streamer.analysis.hybrid import HybridPixelLLM
from streamer.analysis.labels import default_labels
from streamer.llm import LlmUnavailableError

TINY_CLIP = {"model": "tiny", "weights": "random", "device": "cpu"}


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (120 + 8 * i, 160, 3), dtype=np.uint8) for i in range(n)]


async def test_describe_one_image_or_a_batch_through_one_client(double):
    async with HybridPixelLLM("clip", TINY_CLIP, "qwen2-vl-2b-instruct", double.url) as hybrid:
        tokens = hybrid.encoder(frames(1)[0])
        assert tokens.ndim == 3 and tokens.shape[0] == 1  # [batch, tokens, dim]
        one = await hybrid.describe(frames(1)[0])
        batch = await hybrid.describe(frames(3))
        client = hybrid.client
    assert one == ["Caption 1 by qwen2-vl-2b-instruct, with an image."]
    assert [c.split(" by")[0] for c in batch] == ["Caption 2", "Caption 3", "Caption 4"]
    assert hybrid.client is None and client.stats.captions == 4
    assert double.counts["GET /v1/models"] == 1  # one client, probed once
    labels = set(default_labels())
    for body in double.chat_bodies:
        text = body["messages"][1]["content"][0]["text"]
        tags = text.split("sees: ")[1].split(". Describe")[0].split(", ")
        assert len(tags) == 3 and set(tags) <= labels  # CLIP's zero-shot tags went along


async def test_encoders_without_a_text_tower_describe_without_tags(double):
    hybrid = HybridPixelLLM("default", {"weights": "random", "device": "cpu"},
                            lm_studio_url=double.url)  # fmt: skip
    try:
        assert hybrid.tags(frames(2)) == [[], []]
        assert await hybrid.describe(frames(1))
    finally:
        await hybrid.aclose()
        await hybrid.aclose()  # twice is fine
    assert "nothing recognised" in double.chat_bodies[0]["messages"][1]["content"][0]["text"]


async def test_a_server_failure_is_raised_not_hidden():
    server = LmStudioDouble()
    await server.start()
    await server.stop()
    async with HybridPixelLLM("clip", TINY_CLIP, lm_studio_url=server.url) as hybrid:
        with pytest.raises(LlmUnavailableError):
            await hybrid.describe(frames(1))
