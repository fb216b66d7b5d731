"""`HybridPixelLLM`: the seed project's surface, kept as a thin facade over `encoders` and
`streamer.llm`: encode images, tag them zero-shot, and ask LM Studio to describe them.

Example:
    >>> async with HybridPixelLLM("clip", lm_studio_model="qwen2-vl-2b-instruct") as hybrid:
    ...     captions = await hybrid.describe(frame)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np

import encoders
from streamer.analysis.analyzer import Analyzer, Vocabulary
from streamer.analysis.labels import default_labels, prompts
from streamer.llm import DEFAULT_URL, CaptionRequest, LlmClient, LlmConfig

__all__ = ["HybridPixelLLM"]


class HybridPixelLLM:
    """An image encoder plus an LLM client: images in, captions out.

    Args:
        encoder_type: "clip", "dinov2" or "default" (see `encoders.create_encoder`).
        encoder_config: keyword arguments for `encoders.create_encoder` (`model`, `weights`,
            `device`, `precision`).
        lm_studio_model: the model to ask; None uses the one loaded in LM Studio.
        lm_studio_url: the OpenAI-compatible base URL (LM Studio's by default).

    Attributes:
        encoder: the image encoder (`encoder(images)` gives [batch, tokens, dim] features).
        client: the LLM client, created with the session on first use.

    Only CLIP has a text tower, so only CLIP frames get zero-shot tags; DINOv2 and the default
    encoder caption from the image alone (or, for a text-only model, from no tags at all).
    """

    def __init__(
        self,
        encoder_type: str = "clip",
        encoder_config: dict[str, Any] | None = None,
        lm_studio_model: str | None = None,
        lm_studio_url: str = DEFAULT_URL,
    ) -> None:
        self.encoder = encoders.create_encoder(encoder_type, **(encoder_config or {}))
        self.config = LlmConfig(url=lm_studio_url, model=lm_studio_model)
        self.client: LlmClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._analyzer: Analyzer | None = None

    async def __aenter__(self) -> HybridPixelLLM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session (safe to call twice)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
            self.client = None

    def tags(self, images: np.ndarray | Sequence[np.ndarray], top_k: int = 3) -> list[list[str]]:
        """Zero-shot tags per image from the default vocabulary ([] per image without CLIP).

        This runs the encoder on the calling thread; `describe` moves it off the event loop.
        """
        batch = _as_list(images)
        analyzer = self._tagger(top_k)
        if analyzer is None:
            return [[] for _ in batch]
        embeddings = self.encoder.embed(batch).float().cpu().numpy()
        return [[tag.label for tag in tags] for tags in analyzer.tag_batch(embeddings)]

    async def describe(self, images: np.ndarray | Sequence[np.ndarray]) -> list[str]:
        """One caption per image (HxWx3 uint8 RGB, or a list of them), in order.

        Raises:
            LlmError: the server failed (see `streamer.llm.errors`); nothing is returned.
        """
        batch = _as_list(images)
        tags = await asyncio.to_thread(self.tags, batch)
        client = self._client()
        captions = []
        for i, (image, image_tags) in enumerate(zip(batch, tags, strict=True)):
            request = CaptionRequest(f"image {i}", time.time(), tuple(image_tags), image)
            captions.append(await client.caption(request))
        return captions

    def _client(self) -> LlmClient:
        if self.client is None:
            # Created here, inside the running loop: an aiohttp session belongs to one loop.
            self._session = aiohttp.ClientSession()
            self.client = LlmClient(self.config, self._session)
        return self.client

    def _tagger(self, top_k: int) -> Analyzer | None:
        if not getattr(self.encoder, "has_text", False):
            return None
        if self._analyzer is None or self._analyzer.top_k != top_k:
            labels = default_labels()
            text = self.encoder.embed_text_array(prompts(labels))
            vocabulary = Vocabulary(labels, text, self.encoder.logit_scale)
            self._analyzer = Analyzer(vocabulary, top_k=top_k)
        return self._analyzer


def _as_list(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return [images]
    return list(images)
