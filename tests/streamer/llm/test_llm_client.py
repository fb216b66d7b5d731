"""Captions through the double, one fault at a time: the classification, retries only when
retryable, one state report per change, no crash, and captions again once the server recovers.
Backoff and the breaker run on a stepped clock; nothing sleeps for real except timeouts."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import re
import time

import numpy as np
import pytest
from PIL import Image

from bench.harness.lmstudio import FakeModel, LmStudioDouble
from streamer.core.retry import RetryPolicy
from streamer.llm import (
    DEFAULT_RETRY,
    CaptionRequest,
    LlmCircuitOpenError,
    LlmClient,
    LlmConfig,
    LlmConfigError,
    LlmInputError,
    LlmState,
    LlmTimeoutError,
    LlmUnavailableError,
)
from streamer.llm.breaker import BreakerState

THREE_ATTEMPTS = dataclasses.replace(DEFAULT_RETRY, max_attempts=3)


def attempts(n: int) -> RetryPolicy:
    """The client's default retries, with `n` attempts in all."""
    return dataclasses.replace(DEFAULT_RETRY, max_attempts=n)


CHAT = "POST /v1/chat/completions"
FRAME = np.full((720, 1280, 3), (30, 160, 60), np.uint8)
TEXT_MODEL = "llama-3.2-1b-instruct"


def request(image: np.ndarray | None = FRAME) -> CaptionRequest:
    return CaptionRequest("cam1", 12.5, ("dog", "lawn"), image)


def sent_image(body: dict) -> Image.Image | None:
    content = body["messages"][1]["content"]
    if isinstance(content, str):
        return None
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


async def test_a_vision_model_gets_a_jpeg_and_the_tags(double, make_client):
    client, changes = make_client(double.url, image_long_edge=512)
    # Before the server has answered, the overlay does not say "LLM ok" (a live run starts
    # beside its probe).
    assert (client.state, client.state_detail) == (LlmState.OK, "LLM connecting")
    text = await client.caption(request())
    assert text == "Caption 1 by qwen2-vl-2b-instruct, with an image."
    body = double.chat_bodies[0]
    assert body["model"] == "qwen2-vl-2b-instruct"
    assert (body["temperature"], body["max_tokens"], body["stream"]) == (0.0, 60, False)
    assert sent_image(body).size == (512, 288)
    user_text = body["messages"][1]["content"][0]["text"]
    assert "dog, lawn" in user_text and "cam1" in user_text and "0:00:12.5" in user_text
    assert (client.stats.requests, client.stats.captions, client.stats.errors) == (1, 1, 0)
    assert client.stats.last_latency_s is not None
    assert (client.state, client.state_detail, changes) == (LlmState.OK, "LLM ok", [])


async def test_a_text_only_model_gets_tags_stream_and_time_without_an_image(double, make_client):
    client, changes = make_client(double.url, model=TEXT_MODEL)
    assert "without an image" in await client.caption(request())
    assert sent_image(double.chat_bodies[0]) is None
    assert changes == [(LlmState.NO_VISION, "LLM text-only")]


async def test_an_image_refused_by_a_model_that_claims_vision_falls_back_to_tags_once(
    double, make_client
):
    # LM Studio's gpt-oss case: metadata says vision, the model answers 200 "Vision add-on is
    # not loaded".
    double.models["qwen2-vl-2b-instruct"].vision = False
    double.models["qwen2-vl-2b-instruct"].claims_vision = True
    client, changes = make_client(double.url)
    assert "without an image" in await client.caption(request())
    assert double.counts[CHAT] == 2 and client.stats.retries == 0
    assert client.stats.fallbacks == 1
    assert "without an image" in await client.caption(request())
    assert double.counts[CHAT] == 3  # remembered: no image any more
    assert [sent_image(b) is None for b in double.chat_bodies] == [False, True, True]
    assert client.info.vision_source == "image error"
    assert changes == [(LlmState.NO_VISION, "LLM text-only")]


async def test_llama_cpps_500_for_an_image_is_no_vision_not_an_outage(make_client):
    models = [FakeModel("smol", vision=False)]
    async with LmStudioDouble(models=models, flavor="llama.cpp") as server:
        client, changes = make_client(server.url, vision=True)  # told wrongly: vision
        assert "without an image" in await client.caption(request())
        assert server.counts[CHAT] == 2 and client.stats.retries == 0
        assert changes == [(LlmState.NO_VISION, "LLM text-only")]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("error-200", "server_error"), ("loading-503", "loading"), ("500", "server_error"),
     ("429", "busy"), ("drop", "dropped"), ("garbage", "bad_response")],
)  # fmt: skip
async def test_retryable_faults_are_retried_with_jittered_backoff(
    double, make_client, fake_time, fault, kind
):
    double.faults.extend([fault, fault])
    retry = RetryPolicy(initial=0.5, cap=8.0, jitter=1.0, max_attempts=3)
    client, changes = make_client(double.url, retry=retry, rng=lambda: 0.5)
    assert await client.caption(request()) == "Caption 3 by qwen2-vl-2b-instruct, with an image."
    assert double.counts[CHAT] == 3
    assert client.stats.retries == 2
    assert fake_time.sleeps == [0.25, 0.5]  # (1 - rng)·min(cap, initial·2^n): full jitter
    assert changes == []  # recovered within the call: nothing to report


async def test_a_fault_that_outlasts_the_retries_is_raised_and_reported_once(double, make_client):
    double.faults.extend(["loading-503"] * 9)
    client, changes = make_client(double.url, retry=THREE_ATTEMPTS, breaker_failures=100)
    for _ in range(3):
        with pytest.raises(LlmUnavailableError) as caught:
            await client.caption(request())
        assert caught.value.kind == "loading" and caught.value.status == 503
    assert double.counts[CHAT] == 9
    assert client.stats.errors == 3
    assert [state for state, _ in changes] == [LlmState.DOWN]
    assert re.fullmatch(r"LLM down since \d\d:\d\d:\d\d", client.state_detail)
    assert await client.caption(request())  # the faults ran out: captions resume
    assert [state for state, _ in changes] == [LlmState.DOWN, LlmState.OK]


async def test_a_read_timeout_is_retryable(double, session, fake_time):
    double.faults.append("hang")
    config = LlmConfig(url=double.url, read_timeout=0.3, first_request_timeout=0.3)
    client = LlmClient(config, session, clock=fake_time, sleep=fake_time.sleep)
    started = time.monotonic()
    assert await client.caption(request())
    assert time.monotonic() - started < 3
    assert client.stats.retries == 1
    assert client.last_error is None  # a recovered retry is not an error


async def test_timeouts_raise_llm_timeout_error(double, session):
    double.faults.extend(["hang"] * 2)
    config = LlmConfig(url=double.url, read_timeout=0.2, first_request_timeout=0.2,
                       retry=attempts(2))  # fmt: skip
    client = LlmClient(config, session, sleep=lambda s: asyncio.sleep(0))
    with pytest.raises(LlmTimeoutError, match=r"no answer within 0\.2 s"):
        await client.caption(request())


@pytest.mark.parametrize(
    ("knob", "value", "model", "kind"),
    [
        ("no_models_loaded", True, "qwen2-vl-2b-instruct", "no_models_loaded"),
        ("unknown_model_mode", "invalid", "no-such-model", "model_not_found"),
        ("unknown_model_mode", "legacy404", "no-such-model", "model_not_found"),
        ("require_auth", "sk-lm-x", None, "auth"),
    ],
)
async def test_configuration_faults_are_not_retried_and_reported_once(
    double, make_client, knob, value, model, kind
):
    setattr(double, knob, value)
    client, changes = make_client(double.url, model=model)
    for _ in range(3):
        with pytest.raises(LlmConfigError) as caught:
            await client.caption(request())
        assert caught.value.kind == kind
    assert client.stats.retries == 0
    # One request per call; none when the model list already refused the key.
    assert double.counts[CHAT] == (0 if kind == "auth" else 3)
    assert [state for state, _ in changes] == [LlmState.ERROR]
    assert client.breaker_state is BreakerState.CLOSED  # the server is up: no breaker


async def test_https_to_a_plain_http_server_says_to_write_http(double, make_client):
    # The TLS handshake's "wrong version number" was told as "is LM Studio running?".
    client, changes = make_client(double.url.replace("http://", "https://"))
    with pytest.raises(LlmConfigError) as caught:
        await client.probe()
    assert caught.value.kind == "wrong_url"
    assert "over TLS" in str(caught.value) and "write its URL with http://" in str(caught.value)
    assert "LM Studio running" not in str(caught.value)
    assert [state for state, _ in changes] == [LlmState.ERROR]


async def test_no_model_loaded_recovers_when_one_is_loaded(double, make_client):
    double.no_models_loaded = True
    client, changes = make_client(double.url)
    with pytest.raises(LlmConfigError, match="lms load"):
        await client.caption(request())
    assert double.counts[CHAT] == 0
    double.no_models_loaded = False
    assert await client.caption(request())
    assert [state for state, _ in changes] == [LlmState.ERROR, LlmState.OK]


async def test_input_faults_fail_that_request_only(double, make_client):
    client, changes = make_client(double.url)
    double.faults.append("empty")
    with pytest.raises(LlmInputError) as empty:
        await client.caption(request())
    assert empty.value.kind == "empty_answer"
    double.models["qwen2-vl-2b-instruct"].context_length = 100  # the image alone takes 256
    with pytest.raises(LlmInputError) as overflow:
        await client.caption(request())
    assert overflow.value.kind == "context_overflow" and overflow.value.status == 400
    assert double.counts[CHAT] == 2 and client.stats.retries == 0
    assert await client.caption(request(image=None))  # the next, smaller request works
    assert changes == [] and client.state is LlmState.OK


async def test_jit_loading_gets_the_first_request_timeout_then_the_read_timeout(double, session):
    double.jit_load_delay_s = 0.5
    config = LlmConfig(url=double.url, model=TEXT_MODEL, read_timeout=0.2,
                       first_request_timeout=5, retry=attempts(1))  # fmt: skip
    client = LlmClient(config, session)
    info = await client.probe()
    assert info.loaded is False
    assert await client.caption(request())  # 0.5 s of loading: beyond the read timeout
    assert double.models[TEXT_MODEL].loaded
    double.delay_s = 0.5  # now warm, the short read timeout applies
    with pytest.raises(LlmTimeoutError):
        await client.caption(request())


async def test_a_slow_server_marks_slow_and_recovers_to_ok(double, session):
    config = LlmConfig(url=double.url, slow_after=0.15)
    client = LlmClient(config, session)
    changes = []
    client.on_state_change = lambda state, detail: changes.append((state, detail))
    double.delay_s = 0.3
    await client.caption(request())
    await client.caption(request())
    assert client.state is LlmState.SLOW
    assert re.fullmatch(r"LLM slow 0\.\d s", client.state_detail)
    double.delay_s = 0
    await client.caption(request())
    assert [state for state, _ in changes] == [LlmState.SLOW, LlmState.OK]


async def test_a_request_out_longer_than_slow_after_marks_slow_before_its_answer(double, session):
    # A server that took the request and hung showed "LLM ok" for as long as it hung.
    config = LlmConfig(url=double.url, slow_after=0.2)
    client = LlmClient(config, session)
    await client.caption(request())
    changes = []
    client.on_state_change = lambda state, detail: changes.append((state, detail))
    double.delay_s = 1.0
    asking = asyncio.ensure_future(client.caption(request()))
    await asyncio.sleep(0.5)
    assert client.state is LlmState.SLOW and not asking.done()
    assert client.state_detail == "LLM slow: no answer in 0.2 s"
    await asking
    assert re.fullmatch(r"LLM slow 1\.\d s", client.state_detail)
    double.delay_s = 0
    await client.caption(request())
    assert [state for state, _ in changes] == [LlmState.SLOW, LlmState.OK]


async def test_the_server_going_down_opens_the_breaker_and_coming_back_closes_it(
    double, make_client, fake_time
):
    client, changes = make_client(double.url, retry=THREE_ATTEMPTS, breaker_failures=3,
                                  breaker_probe_every=10)  # fmt: skip
    assert await client.caption(request())
    await double.stop()
    with pytest.raises(LlmUnavailableError) as down:
        await client.caption(request())  # three attempts, refused: the breaker opens
    assert down.value.kind == "unreachable"
    assert client.breaker_state is BreakerState.OPEN
    assert client.stats.requests == 1 + 3
    await double.start()  # back on the same port, but the breaker waits
    with pytest.raises(LlmCircuitOpenError, match=r"next trial request goes in 10\.0 s"):
        await client.caption(request())
    assert double.counts[CHAT] == 1 and client.stats.rejected == 1
    fake_time.advance(10)
    assert await client.caption(request())  # the trial: probe again, then caption
    assert double.counts[CHAT] == 2
    assert client.breaker_state is BreakerState.CLOSED
    assert [state for state, _ in changes] == [LlmState.DOWN, LlmState.OK]


async def test_a_failed_trial_is_not_retried_and_waits_again(double, make_client, fake_time):
    client, changes = make_client(double.url, breaker_failures=1, breaker_probe_every=10)
    await double.stop()
    with pytest.raises(LlmUnavailableError):
        await client.caption(request())
    assert client.stats.requests == 0  # the probe's model list failed: no chat request
    fake_time.advance(10)
    sleeps = len(fake_time.sleeps)
    with pytest.raises(LlmUnavailableError) as trial:
        await client.caption(request())
    assert not isinstance(trial.value, LlmCircuitOpenError)  # it was sent
    assert len(fake_time.sleeps) == sleeps  # one attempt, no backoff
    with pytest.raises(LlmCircuitOpenError):
        await client.caption(request())
    assert [state for state, _ in changes] == [LlmState.DOWN]


async def test_a_cancelled_trial_does_not_wedge_the_breaker(double, make_client, fake_time):
    client, _ = make_client(double.url, breaker_failures=1, breaker_probe_every=10)
    assert await client.caption(request())
    double.faults.append("500")
    with pytest.raises(LlmUnavailableError):
        await client.caption(request())
    fake_time.advance(10)
    double.faults.append("hang")
    trial = asyncio.create_task(client.caption(request()))
    while double.counts[CHAT] < 3:
        await asyncio.sleep(0.01)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert await client.caption(request())  # the next call may be the trial


async def test_requests_never_exceed_the_servers_slots(make_client):
    async with LmStudioDouble(models=[FakeModel("m", vision=True)], flavor="openai") as one:
        one.delay_s = 0.05
        client, _ = make_client(one.url, vision=True)
        await asyncio.gather(*(client.caption(request(None)) for _ in range(4)))
        assert one.max_in_flight == 1  # unknown servers (llama-cpp-python) get one at a time
    async with LmStudioDouble() as lmstudio:
        lmstudio.models["qwen2-vl-2b-instruct"].parallel = 2
        lmstudio.delay_s = 0.05
        client, _ = make_client(lmstudio.url)
        await asyncio.gather(*(client.caption(request(None)) for _ in range(5)))
        assert lmstudio.max_in_flight == 2


async def test_reasoning_and_markdown_in_answers_are_cleaned(double, make_client):
    double.answer = lambda body, n: "<think>frame has a dog</think>\n\n**A dog** runs.\n\n\n"
    client, _ = make_client(double.url)
    assert await client.caption(request()) == "A dog runs."


async def test_a_frame_already_encoded_as_jpeg_is_sent_as_it_is(double, make_client):
    """A cluster shard encodes the frame where it is and sends only the JPEG: the client puts
    those bytes in the request unchanged (no second encode, no resize)."""
    buffer = io.BytesIO()
    Image.new("RGB", (320, 180), (200, 40, 40)).save(buffer, "JPEG", quality=70)
    jpeg = buffer.getvalue()
    client, _ = make_client(double.url, image_long_edge=128)
    text = await client.caption(CaptionRequest("cam1", 12.5, ("dog",), jpeg=jpeg))
    assert text.endswith("with an image.")
    url = double.chat_bodies[0]["messages"][1]["content"][1]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == jpeg
    with pytest.raises(LlmInputError, match="JPEG"):
        CaptionRequest("cam1", 1.0, (), jpeg=b"PNG not jpeg")
