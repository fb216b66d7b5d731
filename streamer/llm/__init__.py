"""Captions from a local LLM server: LM Studio first, any OpenAI-compatible server as well.

Example:
    >>> import aiohttp
    >>> from streamer.llm import CaptionRequest, LlmClient, LlmConfig
    >>> async def one(frame):  # doctest: +SKIP
    ...     async with aiohttp.ClientSession() as session:
    ...         client = LlmClient(LlmConfig(url="http://localhost:1234/v1"), session)
    ...         return await client.caption(CaptionRequest("cam1", 12.5, ("dog",), frame))
"""

from __future__ import annotations

from streamer.errors import (
    LlmAuthError,
    LlmCircuitOpenError,
    LlmConfigError,
    LlmError,
    LlmInputError,
    LlmNoVisionError,
    LlmTimeoutError,
    LlmUnavailableError,
)
from streamer.llm.client import CaptionClient, CaptionRequest, LlmClient
from streamer.llm.config import DEFAULT_RETRY, DEFAULT_URL, LlmConfig
from streamer.llm.health import LlmState, LlmStats
from streamer.llm.probe import ModelInfo, ServerInfo
from streamer.llm.prompts import DEFAULT_PROMPT, DEFAULT_SYSTEM_PROMPT

__all__ = [
    "DEFAULT_PROMPT",
    "DEFAULT_RETRY",
    "DEFAULT_SYSTEM_PROMPT",
    "DEFAULT_URL",
    "CaptionClient",
    "CaptionRequest",
    "LlmAuthError",
    "LlmCircuitOpenError",
    "LlmClient",
    "LlmConfig",
    "LlmConfigError",
    "LlmError",
    "LlmInputError",
    "LlmNoVisionError",
    "LlmState",
    "LlmStats",
    "LlmTimeoutError",
    "LlmUnavailableError",
    "ModelInfo",
    "ServerInfo",
]
