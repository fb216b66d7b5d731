"""The viewer's routes on a real run: what each answers, the token on every one of them, no
path traversal, no request bodies, unknown streams."""

import json

import aiohttp
import pytest
from media import read_jsonl
from web_helpers import port_of, raw_request, run_and_check

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.config import ServeConfig
from streamer.errors import ConfigError
from streamer.watch.web import WebViewer

TOKEN = "t0k/en with space"
GUARDED = [
    "/", "/static/app.js", "/static/style.css", "/api/status", "/api/captions", "/api/alerts",
    "/metrics",
]  # fmt: skip
ROUTES = [*GUARDED, "/healthz"]
SNAPSHOT = "/streams/clip/snapshot.jpg"  # 503 once the stream has ended: tested while live
STREAMING = ["/streams/clip/mjpeg", "/events"]


def _config(tmp_path, clip, **kwargs) -> RunConfig:
    return RunConfig(input=f"clip={clip}", outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
                     **kwargs)  # fmt: skip


async def _get(session, url, **kwargs) -> tuple[int, dict, bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


async def test_every_route_needs_the_token_by_header_or_query(tmp_path, small_clip, tiny_encoder):
    viewer = WebViewer(ServeConfig(port=0, token=TOKEN))

    async def check(viewer):
        base = viewer.url.rstrip("/")
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        seen = {}
        async with aiohttp.ClientSession() as session:
            for route in [*GUARDED, SNAPSHOT, *STREAMING]:
                no_token = await _get(session, base + route)
                wrong = await _get(session, base + route, headers={"Authorization": "Bearer x"})
                wrong_query = await _get(session, base + route, params={"token": TOKEN + "x"})
                seen[route] = (no_token[0], wrong[0], wrong_query[0])
                assert no_token[1]["WWW-Authenticate"].startswith("Bearer")
                assert b"token" in no_token[2]  # says what is missing
            for route in [*GUARDED, SNAPSHOT]:
                by_header = await _get(session, base + route, headers=bearer)
                by_query = await _get(session, base + route, params={"token": TOKEN})
                seen[route] += (by_header[0], by_query[0])
            page = await _get(session, base + "/", params={"token": TOKEN})
            health = await _get(session, base + "/healthz")  # a container's check has no token
        # With a token, any name reaches it (a proxy in front): the token is the guard.
        proxied = await raw_request(
            port_of(viewer), f"GET /api/status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}",
            host="cams.example.com",
        )  # fmt: skip
        seen["proxied"] = (proxied[0],)
        return seen, page, health

    config = _config(tmp_path, small_clip)
    _, (seen, page, health) = await run_and_check(config, tiny_encoder, viewer, check)
    assert seen.pop("proxied") == (200,)
    assert health[0] == 200 and json.loads(health[2])["streams"] == 1  # counts, no names
    assert b"clip" not in health[2]
    for route, statuses in seen.items():
        assert statuses[:3] == (401, 401, 401), route
        if route in GUARDED:
            assert statuses[3:] == (200, 200), route
    assert seen[SNAPSHOT][3:] == (503, 503)  # let in: the stream has just no frame to show
    # The page passes its token on to its own script and style (they are guarded too).
    html = page[2].decode()
    assert 'src="static/app.js?token=t0k%2Fen%20with%20space"' in html
    assert page[1]["Referrer-Policy"] == "no-referrer"
    assert "default-src 'self'" in page[1]["Content-Security-Policy"]


TRAVERSALS = [
    "/static/../../etc/passwd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2fetc%2fpasswd",
    "/static/app.js/../../../etc/passwd",
    "/streams/..%2f..%2fetc%2fpasswd/snapshot.jpg",
    "/static/index.html",
    "/static/__init__.py",
    "/../streamer/watch/web/server.py",
    "//etc/passwd",
]


async def test_no_route_reads_a_path_from_the_request(tmp_path, small_clip, tiny_encoder):
    viewer = WebViewer(ServeConfig(port=0))

    async def check(viewer):
        port = port_of(viewer)
        return {target: await raw_request(port, f"GET {target} HTTP/1.1") for target in TRAVERSALS}

    _, answers = await run_and_check(_config(tmp_path, small_clip), tiny_encoder, viewer, check)
    for target, (status, body) in answers.items():
        assert status == 404, target
        assert b"root:" not in body and b"import" not in body, target


async def test_routes_answer_what_the_run_did(tmp_path, small_clip, tiny_encoder):
    viewer = WebViewer(ServeConfig(port=0))

    async def check(viewer):
        base = viewer.url.rstrip("/")
        port = port_of(viewer)
        async with aiohttp.ClientSession() as session:
            answers = {route: await _get(session, base + route) for route in ROUTES}
            answers["unknown mjpeg"] = await _get(session, base + "/streams/nope/mjpeg")
            answers["unknown snapshot"] = await _get(session, base + "/streams/nope/snapshot.jpg")
            answers["unknown captions"] = await _get(session, base + "/api/captions?stream=x")
            answers["bad after"] = await _get(session, base + "/api/captions?after=x")
            answers["later"] = await _get(session, base + "/api/captions?stream=clip&after=1")
            async with session.post(base + "/healthz") as response:
                answers["post"] = (response.status, {}, b"")
        answers["body"] = await raw_request(
            port, "GET /healthz HTTP/1.1\r\nContent-Length: 5", b"hello"
        )
        for host in ("localhost:1", "[::1]:1", "evil.example:1", "127.0.0.1.evil.example"):
            answers[host] = await raw_request(port, "GET /healthz HTTP/1.1", host=host)
        answers["head mjpeg"] = await raw_request(port, "HEAD /streams/clip/mjpeg HTTP/1.1")
        async with aiohttp.ClientSession() as session:
            answers["search"] = await _get(session, base + "/search")
            answers["api search"] = await _get(session, base + "/api/search?q=x")
        return answers

    summary, answers = await run_and_check(
        _config(tmp_path, small_clip), tiny_encoder, viewer, check
    )
    for route in ROUTES:
        assert answers[route][0] == 200, route
    assert answers["/api/status"][1]["Content-Type"].startswith("application/json")
    assert answers["/static/app.js"][1]["Content-Type"].startswith("text/javascript")
    # No archive: the search page says why there is none, rather than a bare 404.
    assert answers["search"][0] == 404 and b"run with --archive DIR" in answers["search"][2]
    assert answers["api search"][0] == 404
    assert "--archive DIR" in json.loads(answers["api search"][2])["error"]
    health = json.loads(answers["/healthz"][2])
    assert health == {"status": "ok", "streams": 1, "states": {"ended": 1}}
    status = json.loads(answers["/api/status"][2])
    (stream,) = status["streams"]
    assert stream["name"] == "clip" and stream["frames"]["delivered"] == summary.frames == 50
    assert stream["frames"]["analysed"] == summary.streams[0].analysed
    assert stream["state"] == "ended" and stream["caption"]["source"] == "tags"
    assert stream["damaged"] == 0  # an intact file
    assert status["encoder"]["model"] == "clip tiny" and status["encoder"]["random_weights"]
    assert status["encoder"]["images"] == summary.analysed and status["llm"] is None
    records = read_jsonl(tmp_path / "a.jsonl")
    written = [(r["text"], r["pts"]) for r in records if r["type"] == "caption"]
    served = json.loads(answers["/api/captions"][2])["captions"]
    assert [(c["text"], c["pts"]) for c in served] == written and written
    assert [c["id"] for c in served] == sorted(c["id"] for c in served)
    later = json.loads(answers["later"][2])["captions"]
    assert [c["id"] for c in later] == [c["id"] for c in served if c["id"] > 1]
    assert answers["unknown mjpeg"][0] == answers["unknown snapshot"][0] == 404
    assert (
        answers["unknown captions"][0] == 404
        and b"no stream named" in answers["unknown captions"][2]
    )
    assert answers["bad after"][0] == 400
    assert answers["post"][0] == 405  # nothing takes a body
    assert answers["body"][0] == 413
    assert answers["head mjpeg"][0] == 405
    # Bound to loopback: a name that is not this machine's (DNS rebinding) is refused.
    assert answers["localhost:1"][0] == answers["[::1]:1"][0] == 200
    assert answers["evil.example:1"][0] == answers["127.0.0.1.evil.example"][0] == 403


async def test_a_viewer_that_cannot_bind_its_port_says_so(tmp_path, small_clip, tiny_encoder):
    first = WebViewer(ServeConfig(port=0))

    async def check(viewer):
        # A second run asks for the port the first one holds: refused before any work (its
        # model loaded and an empty JSON Lines file made, before the viewer found out).
        jsonl = tmp_path / "second.jsonl"
        taken = RunConfig(input=str(small_clip), serve=ServeConfig(port=port_of(viewer)),
                          outputs=OutputConfig(jsonl=str(jsonl)))  # fmt: skip
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1") as caught:
            await run_pipeline(taken)  # (no encoder given: the run would load one)
        assert not jsonl.exists()
        return str(caught.value)

    _, message = await run_and_check(_config(tmp_path, small_clip), tiny_encoder, first, check)
    assert "--serve" in message and "0 picks a free one" in message
