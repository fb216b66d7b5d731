"""Text completions (`LlmClient.complete`, for summaries and answers): the same request, retries,
breaker and state as a caption, without an image; then against the real llama-cpp-python
server. Faults come from the double, on a stepped clock."""

from __future__ import annotations

import dataclasses

import pytest

from bench.harness.lmstudio import LmStudioDouble
from streamer.llm import (
    DEFAULT_RETRY,
    CaptionRequest,
    LlmCircuitOpenError,
    LlmClient,
    LlmConfig,
    LlmInputError,
    LlmState,
    LlmUnavailableError,
)
from streamer.llm.answers import clean_answer

CHAT = "POST /v1/chat/completions"


async def test_a_completion_sends_the_callers_text_and_keeps_paragraphs_and_citations(
    double, make_client
):
    double.answer = lambda body, count: (
        "<think>which moment?</think>**The van** arrived at 12:03 [2].\n\n\nIt left   again [3, 5]."
    )
    client, changes = make_client(double.url)
    text = await client.complete("Cite [n].", "When did the van come?", max_tokens=123)
    assert text == "The van arrived at 12:03 [2].\n\nIt left again [3, 5]."
    (body,) = double.chat_bodies
    assert body["messages"] == [
        {"role": "system", "content": "Cite [n]."},
        {"role": "user", "content": "When did the van come?"},
    ]
    assert body["max_tokens"] == 123 and body["stream"] is False
    assert (client.stats.completions, client.stats.captions, client.stats.errors) == (1, 0, 0)
    assert changes == [] and client.state is LlmState.OK
    assert client.state_detail == "LLM ok"  # answered: no longer "LLM connecting"


async def test_a_completion_sends_no_image_probe_and_a_later_caption_still_settles_vision(
    session,
):
    # A bare OpenAI-compatible server says nothing about vision: a caption probes with an image.
    async with LmStudioDouble(flavor="openai") as server:
        client = LlmClient(LlmConfig(url=server.url), session)
        assert await client.complete("Be brief.", "Say hello.")
        assert server.counts[CHAT] == 1 and client.info.vision is None
        assert await client.caption(CaptionRequest("cam", 1.0, ("dog",)))
        assert server.counts[CHAT] == 3  # the image probe, then the caption
        assert client.info.vision is not None


async def test_retryable_faults_are_retried_for_a_completion_too(double, make_client, fake_time):
    double.faults.extend(["loading-503", "500"])
    client, changes = make_client(double.url)
    assert await client.complete("s", "u")
    assert double.counts[CHAT] == 3 and client.stats.retries == 2
    assert len(fake_time.sleeps) == 2 and changes == []


async def test_an_empty_answer_is_an_error_not_a_blank_text(double, make_client):
    double.faults.append("empty")
    client, _ = make_client(double.url)
    with pytest.raises(LlmInputError) as caught:
        await client.complete("s", "u")
    assert caught.value.kind == "empty_answer" and "no answer text" in str(caught.value)
    assert client.stats.errors == 1 and double.counts[CHAT] == 1  # not retried


async def test_a_server_that_is_down_opens_the_breaker_for_completions(make_client):
    one = dataclasses.replace(DEFAULT_RETRY, max_attempts=1)
    client, changes = make_client("http://127.0.0.1:9/v1", retry=one, breaker_failures=2)
    for _ in range(2):
        with pytest.raises(LlmUnavailableError, match=r"127\.0\.0\.1:9/v1"):
            await client.complete("s", "u")
    with pytest.raises(LlmCircuitOpenError):
        await client.complete("s", "u")
    assert client.stats.rejected == 1
    assert [state for state, _ in changes] == [LlmState.DOWN]


async def test_a_long_completion_does_not_mark_the_client_slow(double, session):
    double.delay_s = 0.3
    client = LlmClient(LlmConfig(url=double.url, slow_after=0.1), session)
    await client.complete("s", "u")
    assert client.state is LlmState.OK
    await client.caption(CaptionRequest("cam", 1.0, ("dog",)))
    assert client.state is LlmState.SLOW  # captions are what the state judges


async def test_max_tokens_out_of_range_is_refused_before_sending(double, make_client):
    client, _ = make_client(double.url)
    with pytest.raises(LlmInputError, match="max_tokens"):
        await client.complete("s", "u", max_tokens=0)
    assert double.counts[CHAT] == 0


def test_clean_answer_cuts_long_text_at_a_word_and_refuses_nothing():
    text = clean_answer("word " * 100, max_chars=50)
    assert len(text) <= 50 and text.endswith("…")
    with pytest.raises(LlmInputError):
        clean_answer("<think>only thinking</think> **  ** ")


@pytest.mark.integration
async def test_the_real_server_completes_text(llm_server, session):
    client = LlmClient(LlmConfig(url=llm_server.url), session)
    text = await client.complete(
        "You answer in one short sentence.", "What colour is the sky on a clear day?",
        max_tokens=40,
    )  # fmt: skip
    assert text.strip() and client.stats.completions == 1
    assert client.stats.requests == 1  # no image probe before a completion
