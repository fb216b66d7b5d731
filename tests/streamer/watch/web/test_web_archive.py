"""The archive on the web (`/search` and its API): archives made by real runs (a clip file, a
real RTSP stream's recordings), served by `ArchiveServer` (what `streamer serve --archive`
runs) and by a run's own viewer, asked through aiohttp's test client."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from servers.llm_server import llm_server  # noqa: F401  (session fixture)
from web_helpers import raw_request, run_and_check, wait_for_url

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.archive import Archive, EncoderSpec
from streamer.archive.embedder import Embedder
from streamer.archive.options import ArchiveConfig
from streamer.archive.recordings import locate, prune
from streamer.config import ServeConfig
from streamer.core.batcher import BatchPolicy
from streamer.run_setup import observers_from_config
from streamer.watch.web import WebViewer
from streamer.watch.web.archive_reader import Catalogues
from streamer.watch.web.archive_routes import ArchiveServer

TOKEN = "s3arch t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _embedder(encoder) -> Embedder:
    return Embedder.of(encoder, EncoderSpec.of(encoder))


async def _client(root: Path, encoder, token: str | None = TOKEN, llm=None) -> TestClient:
    server = ArchiveServer(root, ServeConfig(port=0, token=token), embedder=_embedder(encoder),
                           llm=llm)  # fmt: skip
    client = TestClient(TestServer(server.app()))
    await client.start_server()
    return client


@pytest.fixture
async def client(clip_archive, tiny_encoder):
    client = await _client(clip_archive, tiny_encoder)
    yield client
    await client.close()


async def _get(client: TestClient, path: str, headers=AUTH, **params) -> tuple[int, dict, bytes]:
    async with client.get(path, params=params, headers=headers, allow_redirects=False) as r:
        return r.status, dict(r.headers), await r.read()


async def _search(client: TestClient, **params) -> list[dict]:
    async with client.get("/api/search", params=params, headers=AUTH) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["hits"]


def _rows(root: Path) -> dict[tuple[str, float], dict]:
    table = Archive(root).table()
    return {(r["stream"], r["wall_time"]): r for r in table.lance.to_arrow().to_pylist()}


async def test_a_search_returns_moments_with_their_thumbnails_and_where_they_play(
    client, clip_archive
):
    rows = _rows(clip_archive)
    assert len(rows) >= 12  # a moment at least every second of the 12 s clip
    hits = await _search(client, q="a rabbit in a meadow", k="5")
    assert len(hits) == 5
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    for hit in hits:
        row = rows[(hit["stream"], hit["wall_time"])]  # the key is the row's own
        assert hit["stream"] == "twelve" and hit["media_time"] == row["media_time"]
        assert hit["caption"] == row["caption"] and hit["media_gone"] is None
        assert hit["media"]["kind"] == "file"
        assert hit["media"]["offset"] == pytest.approx(row["media_time"], abs=1e-3)
        status, headers, jpeg = await _get(client, "/" + hit["thumbnail"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert jpeg == row["thumbnail"]
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and max(picture.shape[:2]) <= 192
    # All of them, each once: k larger than the archive.
    every = await _search(client, q="a rabbit", k="100")
    assert len(every) == len(rows) == len({(h["stream"], h["wall_time"]) for h in every})


async def test_the_filters_narrow_the_search(client):
    (best, *_) = await _search(client, q="a rabbit", k="3")
    tag = best["tags"][0][0]
    tagged = await _search(client, q="a rabbit", k="100", tag=tag, stream="twelve")
    assert tagged and all(tag in [t[0] for t in h["tags"]] for h in tagged)
    assert await _search(client, q="a rabbit", until="2000-01-01T00:00") == []
    assert len(await _search(client, q="a rabbit", since="2000-01-01", k="4")) == 4


async def test_the_media_is_served_with_range_requests(client, twelve_second_clip):
    (hit,) = await _search(client, q="a rabbit", k="1")
    data = twelve_second_clip.read_bytes()
    url = "/" + hit["media"]["url"]
    status, headers, body = await _get(client, url, headers={**AUTH, "Range": "bytes=1000-4999"})
    assert status == 206 and body == data[1000:5000]
    assert headers["Content-Range"] == f"bytes 1000-4999/{len(data)}"
    status, headers, body = await _get(client, url, headers={**AUTH, "Range": "bytes=-100"})
    assert status == 206 and body == data[-100:]
    status, headers, body = await _get(client, url)
    assert status == 200 and body == data and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "video/mp4"


async def test_every_archive_route_but_healthz_needs_the_token(client):
    (hit,) = await _search(client, q="a rabbit", k="1")
    routes = ["/", "/search", "/static/search.js", "/static/search.css", "/api/archive",
              "/api/search?q=rabbit", "/" + hit["thumbnail"],
              "/" + hit["media"]["url"]]  # fmt: skip
    assert (await _get(client, "/healthz", headers={}))[0] == 200  # a health check has no token
    for route in routes:
        for headers in ({}, {"Authorization": "Bearer nope"}):
            status, sent, body = await _get(client, route, headers=headers)
            assert status == 401 and sent["WWW-Authenticate"].startswith("Bearer"), route
            assert b"token" in body
        assert (await _get(client, route, headers={}, token=TOKEN + "x"))[0] == 401, route
        assert (await _get(client, route))[0] in (200, 302), route  # by header
        status, sent, _ = await _get(client, route, headers={}, token=TOKEN)  # by query
        assert status in (200, 302), route
    status, sent, _ = await _get(client, "/", headers={}, token=TOKEN)
    assert status == 302 and sent["Location"].startswith("search?token=")
    _, _, page = await _get(client, "/search", headers={}, token=TOKEN)
    assert b'src="static/search.js?token=s3arch%20t0ken"' in page  # the page passes it along


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/archive/media?stream=twelve&at=1.5", 404),  # no moment then
        ("/archive/thumbnail.jpg?stream=twelve&at=1.5", 404),
        ("/archive/media?stream=/etc/passwd&at=1", 404),
        ("/archive/media?path=/etc/passwd", 400),  # nothing but a moment's key is read
        ("/archive/media?stream=twelve&at=nan", 400),
        ("/archive/media/../../etc/passwd", 404),
        ("/archive/%2e%2e/%2e%2e/etc/passwd", 404),
        ("/static/..%2farchive.json", 404),
        ("/archive/recordings/x.mp4", 404),
    ],
)
async def test_only_the_archives_own_moments_are_served(client, target, status):
    head = f"GET {target} HTTP/1.1\r\nAuthorization: Bearer {TOKEN}"
    code, _ = await raw_request(client.port, head)
    assert code == status


async def test_a_moved_or_changed_file_is_reported_not_played(tmp_path, small_clip, tiny_encoder):
    clip = tmp_path / "door.mp4"
    shutil.copy(small_clip, clip)
    arch = tmp_path / "arch"
    config = RunConfig(input=str(clip), archive=ArchiveConfig(str(arch), index_every_s=0.5))
    await run_pipeline(config, encoder=tiny_encoder)
    client = await _client(arch, tiny_encoder)
    try:
        (hit,) = await _search(client, q="a rabbit", k="1")
        assert hit["media"] is not None
        clip.rename(tmp_path / "elsewhere.mp4")
        hits = await _search(client, q="a rabbit", k="10")
        assert hits and all(h["media"] is None for h in hits)
        assert all("door.mp4 is gone" in h["media_gone"] for h in hits), hits[0]["media_gone"]
        status, _, body = await _get(client, "/" + hit["media"]["url"])
        assert status == 410 and b"moved or deleted" in body
        assert (await _get(client, "/" + hit["thumbnail"]))[0] == 200  # the index still has it
        (tmp_path / "elsewhere.mp4").rename(clip)
        with clip.open("ab") as file:
            file.write(b"\0" * 10)
        (changed, *_) = await _search(client, q="a rabbit", k="10")
        assert changed["media"] is None and "changed since it was indexed" in changed["media_gone"]
        assert (await _get(client, "/" + hit["media"]["url"]))[0] == 410
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"q": " "}, "words to look for"),
        ({"q": "x", "stream": "nope"}, "unknown stream 'nope'"),
        ({"q": "x", "since": "soon"}, "is not a time"),
        ({"q": "x", "since": "1h ago", "until": "2h ago"}, "nothing can match"),
        ({"q": "x", "k": "0"}, "k must be in 1..200"),
        ({"q": "x", "k": "many"}, "k must be a whole number"),
    ],
)
async def test_a_bad_query_is_a_400_that_says_why(client, params, words):
    async with client.get("/api/search", params=params, headers=AUTH) as response:
        assert response.status == 400 and response.content_type == "application/json"
        assert words in (await response.json())["error"]


async def test_a_missing_archive_is_a_503_naming_it(tmp_path, tiny_encoder):
    client = await _client(tmp_path / "none", tiny_encoder, token=None)
    try:
        for route in ("/api/archive", "/api/search?q=x", "/archive/media?stream=a&at=1"):
            async with client.get(route) as response:
                assert response.status == 503
                assert str(tmp_path / "none") in (await response.json())["error"]
        assert (await _get(client, "/search", headers={}))[0] == 200  # the page says it itself
    finally:
        await client.close()


def test_a_run_hands_its_archive_to_its_viewer(tmp_path):
    config = RunConfig(input="x.mp4", serve=ServeConfig(port=0),
                       archive=ArchiveConfig(str(tmp_path / "arch")))  # fmt: skip
    (viewer,) = [o for o in observers_from_config(config) if isinstance(o, WebViewer)]
    assert viewer.archive == str(tmp_path / "arch")
    config = RunConfig(input="x.mp4", serve=ServeConfig(port=0))
    (viewer,) = [o for o in observers_from_config(config) if isinstance(o, WebViewer)]
    assert viewer.archive is None


async def test_a_runs_viewer_serves_the_search_of_the_runs_archive(
    tmp_path, small_clip, tiny_encoder
):
    arch = tmp_path / "arch"
    config = RunConfig(input=f"clip={small_clip}", outputs=OutputConfig(jsonl=str(tmp_path / "a")),
                       archive=ArchiveConfig(str(arch), index_every_s=0.5))  # fmt: skip
    viewer = WebViewer(ServeConfig(port=0), archive=arch)

    async def check(viewer):  # at the end: the archive's observer has flushed its rows
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.get(viewer.url + "api/archive") as response:
                info = await response.json()
            async with session.get(viewer.url + "api/search", params={"q": "rabbit"}) as response:
                hits = (await response.json())["hits"]
            async with session.get(viewer.url + "search") as response:
                page = await response.text()
        return info, hits, page

    _, (info, hits, page) = await run_and_check(config, tiny_encoder, viewer, check)
    assert info["live"] is True and info["streams"][0]["stream"] == "clip"
    assert hits and hits[0]["media"]["kind"] == "file"
    assert 'id="q"' in page


async def test_a_cluster_drivers_page_loads_the_archives_encoder_at_its_first_search(
    tmp_path, tiny_encoder
):
    # The driver of a cluster run holds a status view of the pool (the model card, the
    # load), which embeds nothing: its page keeps the `streamer serve` way.
    from types import SimpleNamespace

    from streamer.analysis.service import LocalEncoderService
    from streamer.watch.web.archive_routes import ArchiveRoutes

    writer = SimpleNamespace(weights="random")
    service = LocalEncoderService(tiny_encoder, BatchPolicy())
    config = SimpleNamespace(encoder=SimpleNamespace(device="cpu", export_cache=None))
    try:
        for encoder, borrowed in ((service, True), (SimpleNamespace(model=service.model), False)):
            run = SimpleNamespace(archive=writer, encoder=encoder, config=config)
            routes = ArchiveRoutes.of_run(tmp_path, ServeConfig(port=0), run)
            assert routes.reader.encoder_ready is borrowed
    finally:
        service.close()


async def test_a_live_runs_page_searches_on_the_runs_own_encoder(
    tmp_path, rtsp_server, tiny_encoder, monkeypatch
):
    # While the run goes on, a search embeds its query on the run's encoder service: the page
    # says the encoder is ready from the start, and no second model is loaded.
    import aiohttp

    loads = []
    monkeypatch.setattr(Embedder, "load", classmethod(lambda cls, *a: loads.append(a)))
    arch = tmp_path / "arch"
    config = RunConfig(input=f"door={rtsp_server.url('cam1')}",
                       archive=ArchiveConfig(str(arch), index_every_s=0.5))  # fmt: skip
    viewer, stop = WebViewer(ServeConfig(port=0), archive=arch), asyncio.Event()

    async def search() -> tuple[dict, list[dict]]:
        url = await wait_for_url(viewer)
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(60):
                while True:
                    async with session.get(url + "api/search", params={"q": "a pattern"}) as got:
                        hits = (await got.json())["hits"]
                    if hits:
                        break
                    await asyncio.sleep(0.3)
            async with session.get(url + "api/archive") as response:
                return await response.json(), hits

    try:
        running = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                                   observers=[viewer]))  # fmt: skip
        info, hits = await search()
    finally:
        stop.set()
    await running
    assert info["encoder_ready"] is True and hits[0]["stream"] == "door"
    assert loads == []


@pytest.fixture(scope="module")
def live_archive(tmp_path_factory, rtsp_server, tiny_encoder) -> Path:
    """An archive of a real RTSP stream (`door`), recorded in 2 s segments for about 7 s."""
    arch = tmp_path_factory.mktemp("archives") / "live"
    config = RunConfig(
        input=f"door={rtsp_server.url('cam1')}",
        archive=ArchiveConfig(str(arch), segment_s=2.0, index_every_s=1.0),
    )

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(7.0, stop.set)
        await run_pipeline(config, encoder=tiny_encoder, stop=stop)

    asyncio.run(run())
    return arch


@pytest.mark.slow
async def test_a_live_moment_plays_from_its_recording_segment(live_archive, tiny_encoder):
    client = await _client(live_archive, tiny_encoder)
    try:
        hits = await _search(client, q="a test pattern", k="50")
        playable = [h for h in hits if locate(live_archive, "door", h["wall_time"])]
        assert len(playable) >= 3
        for hit in hits:
            found = locate(live_archive, "door", hit["wall_time"])
            if found is None:  # seen before the first key frame: not recorded
                assert hit["media"] is None and "no recording holds" in hit["media_gone"]
                continue
            segment, offset = found
            assert hit["media"]["kind"] == "recording"
            assert hit["media"]["offset"] == pytest.approx(offset, abs=1e-3)
            assert 0 <= offset <= segment.duration
            data = (live_archive / segment.path).read_bytes()
            url = "/" + hit["media"]["url"]
            status, headers, body = await _get(client, url, headers={**AUTH, "Range": "bytes=0-99"})
            assert status == 206 and body == data[:100]
            assert headers["Content-Type"] == "video/mp4"
    finally:
        await client.close()


@pytest.mark.slow
async def test_a_pruned_recording_is_reported_not_played(live_archive, tiny_encoder, tmp_path):
    copy = tmp_path / "arch"
    shutil.copytree(live_archive, copy)
    removed = prune(copy, retain_s=0.0, max_bytes=None, now=time.time() + 3600)
    assert removed  # every segment: none is being written
    client = await _client(copy, tiny_encoder)
    try:
        hits = await _search(client, q="a test pattern", k="50")
        assert hits and all(h["media"] is None for h in hits)
        assert all("removed by retention" in h["media_gone"] for h in hits)
        key = f"archive/media?stream=door&at={hits[0]['wall_time']!r}"
        status, _, body = await _get(client, "/" + key)
        assert status == 410 and b"no recording holds this moment" in body
    finally:
        await client.close()


def _segment_lines(name: str, start: float, end: float) -> str:
    opened = {"event": "open", "file": name, "start_wall": start, "start_media": 0.0}
    closed = {"event": "close", "file": name, "start_wall": start, "end_wall": end,
              "duration": end - start, "bytes": 10, "complete": True}  # fmt: skip
    return json.dumps(opened) + "\n" + json.dumps(closed) + "\n"


def test_the_catalogues_locate_as_the_recordings_do_and_follow_a_change(tmp_path):
    folder = tmp_path / "recordings" / "door"
    folder.mkdir(parents=True)
    catalogue = folder / "segments.jsonl"
    catalogue.write_text(_segment_lines("a.mp4", 100, 160) + _segment_lines("b.mp4", 160, 220)
                         + _segment_lines("c.mp4", 300, 360))  # fmt: skip
    catalogues = Catalogues(tmp_path)
    for wall in (50.0, 100.0, 130.0, 160.0, 219.9, 250.0, 300.0, 360.0, 400.0, 430.0):
        assert catalogues.locate("door", wall) == locate(tmp_path, "door", wall), wall
    assert catalogues.locate("door", 430.0) is None
    with catalogue.open("a") as file:  # a new segment: the catalogue is read again
        file.write(_segment_lines("d.mp4", 400, 460))
    segment, offset = catalogues.locate("door", 430.0)
    assert segment.path == "recordings/door/d.mp4" and offset == 30.0


# --- questions (/api/ask) ------------------------------------------------------------------------


async def _ask(client: TestClient, **params) -> tuple[int, dict]:
    async with client.get("/api/ask", params=params, headers=AUTH) as response:
        return response.status, await response.json()


@pytest.mark.slow
async def test_a_question_is_answered_by_the_real_llm_citing_the_moments_it_was_given(
    clip_archive,
    tiny_encoder,
    llm_server,  # noqa: F811
):
    from streamer.llm import LlmConfig

    client = await _client(clip_archive, tiny_encoder, llm=LlmConfig(url=llm_server.url))
    try:
        status, reply = await _ask(client, q="what is in the meadow?", k="4")
    finally:
        await client.close()
    assert status == 200 and reply["error"] is None and reply["answer"], reply
    assert len(reply["hits"]) == 4 and all(h["media"]["kind"] == "file" for h in reply["hits"])
    given = {(h["stream"], h["wall_time"]) for h in reply["hits"]}
    assert {(c["stream"], c["wall"]) for c in reply["citations"]} <= given
    assert "[" not in reply["answer"] or "@" in reply["answer"]  # [n] written out as [s @ t]


async def test_with_the_llm_down_a_question_gets_why_and_the_moments(clip_archive, tiny_encoder):
    from streamer.llm import LlmConfig

    down = LlmConfig(url="http://127.0.0.1:9/v1", connect_timeout=1.0)
    client = await _client(clip_archive, tiny_encoder, llm=down)
    try:
        status, reply = await _ask(client, q="what is in the meadow?", k="3")
        empty_status, empty = await _ask(client, q="  ")
    finally:
        await client.close()
    assert status == 200 and reply["answer"] is None and reply["citations"] == []
    assert "127.0.0.1:9" in reply["error"], reply["error"]
    assert len(reply["hits"]) == 3
    assert empty_status == 400 and "a question needs words" in empty["error"]
