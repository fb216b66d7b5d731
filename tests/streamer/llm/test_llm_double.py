"""The double itself, where the client tests lean on it: streaming answers and errors (the client
does not stream), the 200 catch-all, counting, coming back on the same port, and a server that
stops answering."""

from __future__ import annotations

import aiohttp
import pytest

from bench.harness.lmstudio import FakeModel, LmStudioDouble

MESSAGES = [{"role": "user", "content": "Describe a dog."}]


async def test_a_streamed_answer_ends_with_stop_and_done(double, session):
    body = {"model": "qwen2-vl-2b-instruct", "messages": MESSAGES, "stream": True}
    async with session.post(double.url + "/chat/completions", json=body) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = (await response.text()).strip().split("\n\n")
    assert events[-1] == "data: [DONE]"
    assert '"finish_reason": "stop"' in events[-2] and '"delta": {}' in events[-2]


async def test_a_streamed_overflow_is_a_200_with_an_error_event(session):
    async with LmStudioDouble(models=[FakeModel("m", context_length=2)]) as server:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        async with session.post(server.url + "/chat/completions", json=body) as response:
            assert response.status == 200
            text = await response.text()
    assert text.startswith("event: error\ndata: ")
    assert "Input does not fit in context length" in text


async def test_unknown_routes_get_200_errors_and_every_request_is_counted(double, session):
    async with session.post(double.root + "/chat/completions", json={}) as response:
        assert response.status == 200
        assert await response.json() == {
            "error": "Unexpected endpoint or method. (POST /chat/completions)"
        }
    assert double.counts == {"POST /chat/completions": 1}


async def test_it_stops_and_comes_back_on_the_same_port(double, session):
    port = double.port
    await double.stop()
    with pytest.raises(aiohttp.ClientConnectorError):
        await session.get(double.url + "/models")
    await double.start()
    assert double.port == port
    async with session.get(double.url + "/models") as response:
        assert response.status == 200


async def test_hang_after_answers_the_first_requests_then_none(double, session):
    double.hang_after = 1
    body = {"model": "qwen2-vl-2b-instruct", "messages": MESSAGES}
    async with session.post(double.url + "/chat/completions", json=body) as response:
        assert response.status == 200 and (await response.json())["choices"]
    hung = session.post(double.url + "/chat/completions", json=body,
                        timeout=aiohttp.ClientTimeout(total=1.0))  # fmt: skip
    with pytest.raises(TimeoutError):
        async with hung:
            pass
    assert double.chat_count() == 2
