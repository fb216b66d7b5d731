"""A real HTTP receiver for webhook tests (aiohttp's test server): it records each POST."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestServer as HttpServer


class Receiver:
    """A real HTTP server that records each POST and answers with `statuses` in turn (the last
    one from then on); with `hang`, it never answers until the test ends."""

    def __init__(self, statuses=(200,), hang: bool = False, headers=None) -> None:
        self.statuses = list(statuses)
        self.hang = hang
        self.headers = headers or {}
        self.bodies: list[bytes] = []
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook/secret-token", self._post)
        self.server = HttpServer(app, host="127.0.0.1")

    async def __aenter__(self) -> Receiver:
        await self.server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self.server.close()

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook/secret-token"))

    @property
    def payloads(self) -> list[dict]:
        return [json.loads(body) for body in self.bodies]

    async def _post(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        if self.hang:
            await self.release.wait()
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.Response(status=status, text="ok", headers=self.headers)
