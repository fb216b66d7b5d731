"""The viewer closes connections that never finish a request (slowloris), not long answers."""

import asyncio

import pytest
from aiohttp import web

from streamer.watch.web import _http
from streamer.watch.web._http import guarded_app, listen
from streamer.watch.web.options import ServeConfig


async def _slow(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(4):  # longer than the idle timeout, in all
        await asyncio.sleep(0.2)
        await response.write(b"part\n")
    return response


@pytest.fixture
async def served(monkeypatch):
    monkeypatch.setattr(_http, "IDLE_TIMEOUT_S", 0.3)
    app = guarded_app(ServeConfig(port=0))
    app.router.add_get("/slow", _slow)
    runner, _url = await listen(app, ServeConfig(port=0))
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_a_request_never_finished_is_cut_off(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: b\r\n")  # no blank line
    await writer.drain()
    try:
        assert await asyncio.wait_for(reader.read(), 1.5) == b""  # closed by the server
    finally:
        writer.close()


async def test_a_long_answer_is_not_cut_off(served):
    reader, writer = await asyncio.open_connection("127.0.0.1", served)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    await writer.drain()
    try:
        body = await asyncio.wait_for(reader.read(), 1.5)
    finally:
        writer.close()
    assert body.startswith(b"HTTP/1.1 200") and body.count(b"part\n") == 4
