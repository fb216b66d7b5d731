"""`LlmConfig`: everything the LLM client is told, validated once on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamer.core.checks import float_above, http_url, int_in, text_or_file
from streamer.core.options import Option, option, validate
from streamer.core.retry import RetryPolicy
from streamer.errors import ConfigError
from streamer.llm.prompts import DEFAULT_PROMPT, DEFAULT_SYSTEM_PROMPT, check_template

__all__ = ["DEFAULT_RETRY", "DEFAULT_URL", "LlmConfig"]

DEFAULT_URL = "http://localhost:1234/v1"
"""LM Studio's OpenAI-compatible base on its default port."""

DEFAULT_RETRY = RetryPolicy(initial=0.5, cap=8.0, jitter=1.0, max_attempts=3)
"""The client's default retries: 3 attempts, each delay uniform in [0, 0.5 s doubling to 8 s]
(full jitter, for many streams that lost the server together)."""

# A caption is useful for seconds: a call that retried more than this would only be late.
_MOST_ATTEMPTS = 11


@dataclass(frozen=True)
class LlmConfig:
    """How to reach the LLM server and what to ask it.

    Attributes:
        url: the OpenAI-compatible base URL, ending in /v1 (LM Studio's by default).
        model: the model to use; None picks the loaded one (a vision model first).
        api_key: sent as `Authorization: Bearer …` when given (LM Studio's API token).
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait for a caption.
        first_request_timeout: seconds for a model's first caption, which may load it (JIT).
        retry: how retryable failures are retried: `max_attempts` (1 to 11, the first
            included), delays from `initial` doubling to `cap`, `jitter` 1.0 for full jitter.
        breaker_failures: consecutive unavailability failures that open the circuit breaker.
        breaker_probe_every: seconds between the trial requests an open breaker lets through.
        image_long_edge: frames are scaled down to at most this many pixels on the long edge.
        jpeg_quality: JPEG quality of the frames sent (1–100).
        max_tokens: the answer's token budget.
        temperature: sampling temperature; 0 makes answers repeatable.
        system_prompt: the system message; may use the fields {tags}, {stream} and {time}.
        prompt: the user message template; fields {tags}, {stream} and {time}.
        vision: True or False overrides what the server reports about images.
        slow_after: a caption taking longer than this (seconds) marks the state SLOW.

    Raises:
        ConfigError: a value out of range, named with what is allowed.
    """

    url: str = option(DEFAULT_URL, Option("--llm-url", "server base URL", http_url()))
    model: str | None = option(
        None,
        Option("--llm-model", "model to ask", default_text="the one the server has loaded"),
    )
    api_key: str | None = option(
        None, Option("--llm-api-key", "API key, if the server wants one", secret=True)
    )
    connect_timeout: float = 3.0
    read_timeout: float = option(
        30.0,
        Option("--llm-timeout", "seconds to wait for a caption before giving up on it",
               float_above(0, "seconds")),
    )  # fmt: skip
    first_request_timeout: float = option(
        120.0,
        Option("--llm-first-timeout", "seconds for the first caption, which may load the model",
               float_above(0, "seconds")),
    )  # fmt: skip
    retry: RetryPolicy = DEFAULT_RETRY
    breaker_failures: int = 3
    breaker_probe_every: float = 10.0
    image_long_edge: int = 1024
    jpeg_quality: int = 85
    max_tokens: int = option(
        60, Option("--llm-max-tokens", "the answer's token budget", int_in(1, 4096))
    )
    temperature: float = 0.0
    system_prompt: str = option(
        DEFAULT_SYSTEM_PROMPT,
        Option("--system-prompt", "system prompt, or a file", to_field=text_or_file,
               default_text="a short captioning instruction"),
    )  # fmt: skip
    prompt: str = option(
        DEFAULT_PROMPT,
        Option("--prompt", "user prompt template ({tags} {stream} {time}), or a file",
               to_field=text_or_file, default_text="the tags, stream and time"),
    )  # fmt: skip
    vision: bool | None = None
    slow_after: float = 5.0

    def __post_init__(self) -> None:
        validate(self)
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"`url` must be an http:// or https:// URL, got {self.url!r}")
        # A trailing slash would make "…/v1//chat/completions", which LM Studio answers with
        # a 200 "Unexpected endpoint" error.
        object.__setattr__(self, "url", self.url.rstrip("/"))
        for name in ("model", "api_key"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"`{name}` must be a non-empty string or None, got {value!r}")
        self._check_positive()
        self._check_ranges()
        check_template("system_prompt", self.system_prompt)
        check_template("prompt", self.prompt)
        if self.vision not in (None, True, False):
            raise ConfigError(f"`vision` must be True, False or None, got {self.vision!r}")

    def _check_positive(self) -> None:
        for name in (
            "connect_timeout",
            "breaker_probe_every",
            "slow_after",
        ):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0 or not math.isfinite(value):
                raise ConfigError(f"`{name}` must be a positive number of seconds, got {value!r}")

    def _check_ranges(self) -> None:
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"`retry` must be a RetryPolicy, got {self.retry!r}")
        _int_in("retry.max_attempts", self.retry.max_attempts, 1, _MOST_ATTEMPTS)
        _int_in("breaker_failures", self.breaker_failures, 1, 1000)
        # 5120² pixels is LM Studio's hard limit; 16 px is the smallest useful frame.
        _int_in("image_long_edge", self.image_long_edge, 16, 5120)
        _int_in("jpeg_quality", self.jpeg_quality, 1, 100)
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 2:
            raise ConfigError(f"`temperature` must be between 0 and 2, got {self.temperature!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_in(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"`{name}` must be an integer from {low} to {high}, got {value!r}")
