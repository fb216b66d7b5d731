"""A page of another site cannot make the browser change a viewer that has no token (CSRF);
with a token, a page without it is refused by the token, and the viewer's own pages behind a
proxy (whose Origin need not match the Host the proxy passes on) still pass."""

import aiohttp
import pytest
from aiohttp import web

from streamer.watch.web._http import guarded_app, listen
from streamer.watch.web.options import ServeConfig


async def _offer(request: web.Request) -> web.Response:
    return web.json_response({"got": len(await request.read())})


@pytest.fixture
async def base():
    config = ServeConfig(port=0)  # no token, this machine only: what a page could reach
    app = guarded_app(config, takes_body=lambda request: request.method == "POST")
    app.router.add_post("/api/webrtc/cam", _offer)
    app.router.add_get("/api/status", _offer)
    runner, url = await listen(app, config)
    try:
        yield url.rstrip("/")
    finally:
        await runner.cleanup()


async def test_a_post_from_a_page_of_another_site_is_refused(base):
    # What `fetch(url, {method: "POST", mode: "no-cors", body})` on http://evil.example sends.
    headers = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/api/webrtc/cam", data="{}", headers=headers) as r:
            assert r.status == 403 and "evil.example" in await r.text()
        for origin in ("null", "http://localhost:1"):  # a sandboxed frame, another port
            async with session.post(f"{base}/api/webrtc/cam", data="{}",
                                    headers={"Origin": origin}) as r:  # fmt: skip
                assert r.status == 403, origin


async def test_its_own_pages_tools_and_reads_still_pass(base):
    port = base.rsplit(":", 1)[1]
    async with aiohttp.ClientSession() as session:
        for headers in ({"Origin": f"http://127.0.0.1:{port}"}, {}):
            async with session.post(f"{base}/api/webrtc/cam", data="{}", headers=headers) as r:
                assert r.status == 200 and await r.json() == {"got": 2}, headers
        async with session.get(f"{base}/api/status", headers={"Origin": "http://x.example"}) as r:
            assert r.status == 200


async def test_with_a_token_the_origin_is_not_asked():
    config = ServeConfig(host="0.0.0.0", port=0, token="s3cret")
    app = guarded_app(config, takes_body=lambda request: request.method == "POST")
    app.router.add_post("/api/webrtc/cam", _offer)
    runner, url = await listen(app, config)
    proxied = {"Origin": "https://cams.example.org", "Authorization": "Bearer s3cret"}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url.rstrip('/')}/api/webrtc/cam", data="{}",
                                    headers=proxied) as r:  # fmt: skip
                assert r.status == 200
            async with session.post(f"{url.rstrip('/')}/api/webrtc/cam", data="{}",
                                    headers={"Origin": "http://evil.example"}) as r:  # fmt: skip
                assert r.status == 401
    finally:
        await runner.cleanup()
