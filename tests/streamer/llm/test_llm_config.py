"""`LlmConfig` validation and the prompt templates."""

from __future__ import annotations

import datetime

import pytest

from streamer.core.retry import RetryPolicy
from streamer.errors import ConfigError
from streamer.llm import DEFAULT_PROMPT, DEFAULT_SYSTEM_PROMPT, LlmConfig
from streamer.llm.prompts import chat_messages, format_time, render


def test_defaults_are_lm_studios_and_valid():
    config = LlmConfig()
    assert config.url == "http://localhost:1234/v1"
    assert config.temperature == 0.0
    assert all(field in DEFAULT_PROMPT for field in ("{tags}", "{stream}", "{time}"))


def test_a_trailing_slash_is_dropped():
    assert LlmConfig(url="http://h:1234/v1/").url == "http://h:1234/v1"


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("url", "localhost:1234/v1", "url must be an http:// or https:// URL with a host"),
        ("model", "", "`model` must be a non-empty string or None, got ''"),
        ("connect_timeout", 0, "`connect_timeout` must be a positive number of seconds, got 0"),
        ("read_timeout", float("inf"), "read_timeout must be a number of seconds > 0, got inf"),
        ("read_timeout", True, "read_timeout must be a number of seconds > 0, got True"),
        ("retry", 2, "`retry` must be a RetryPolicy, got 2"),
        (
            "retry",
            RetryPolicy(max_attempts=None),
            "`retry.max_attempts` must be an integer from 1 to 11, got None",
        ),
        (
            "retry",
            RetryPolicy(max_attempts=12),
            "`retry.max_attempts` must be an integer from 1 to 11, got 12",
        ),
        ("breaker_failures", 0, "`breaker_failures` must be an integer from 1 to 1000, got 0"),
        ("image_long_edge", 8000, "`image_long_edge` must be an integer from 16 to 5120"),
        ("jpeg_quality", 101, "`jpeg_quality` must be an integer from 1 to 100, got 101"),
        ("max_tokens", 0, "max_tokens must be a whole number in 1..4096, got 0 (--llm-max-tokens)"),
        ("temperature", 3, "`temperature` must be between 0 and 2, got 3"),
        ("vision", "yes", "`vision` must be True, False or None, got 'yes'"),
        (
            "prompt",
            "Describe {scene}",
            "`prompt` may only use the fields {tags}, {stream}, {time}, got ['scene']",
        ),
        ("prompt", "Describe {}", "`prompt` may only use the fields"),
        ("system_prompt", "a } b", "`system_prompt` must be a valid template"),
        ("prompt", "  ", "`prompt` must be a non-empty string, got '  '"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(field, value, says):
    with pytest.raises(ConfigError) as caught:
        LlmConfig(**{field: value})
    assert says in str(caught.value)


def test_templates_fill_tags_stream_and_time():
    text = render("{stream} at {time}: {tags} {{literal}}", tags=("dog", "ball"), stream="cam1",
                  time=65.25)  # fmt: skip
    assert text == "cam1 at 0:01:05.2: dog, ball {literal}"
    assert "nothing recognised" in render(DEFAULT_PROMPT, tags=(), stream="s", time=0)
    assert render(DEFAULT_SYSTEM_PROMPT, tags=(), stream="s", time=0) == DEFAULT_SYSTEM_PROMPT


def test_media_time_and_wall_clock_time_are_told_apart():
    assert format_time(0) == "0:00:00.0"
    assert format_time(3725.96) == "1:02:06.0"
    noon = datetime.datetime(2026, 1, 2, 12, 3, 4).timestamp()
    assert format_time(noon) == "12:03:04"


def test_messages_hold_one_image_part_only_when_given():
    text_only = chat_messages("sys", "user", None)
    assert text_only == [{"role": "system", "content": "sys"},
                         {"role": "user", "content": "user"}]  # fmt: skip
    with_image = chat_messages("sys", "user", "data:image/jpeg;base64,AAAA")[1]["content"]
    assert with_image == [
        {"type": "text", "text": "user"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
    ]
