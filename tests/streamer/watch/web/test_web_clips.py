"""The viewer serves the archive's alert clips (`/archive/clips/{stream}/{file}`) on a real run
with `--archive`: behind its token, with byte ranges, and nothing but a clip inside DIR/clips."""

import json
import os

import aiohttp
import pytest
from web_helpers import port_of, raw_request, run_and_check

from streamer import OutputConfig, RunConfig
from streamer.analysis.alerts import AlertRule
from streamer.archive.options import ArchiveConfig
from streamer.config import ServeConfig
from streamer.watch.web import WebViewer

pytestmark = pytest.mark.integration

TOKEN = "clip-t0ken"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def _get(session, url, **kwargs) -> tuple[int, dict, bytes]:
    async with session.get(url, **kwargs) as response:
        return response.status, dict(response.headers), await response.read()


def _config(tmp_path, clip) -> RunConfig:
    rule = AlertRule("a rabbit", threshold=-1.0, frames=1, cooldown_s=10.0)  # fires once, at 0
    return RunConfig(
        input=f"clip={clip}", outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
        alerts=(rule,), archive=ArchiveConfig(str(tmp_path / "arch"), clip_after_s=1.0),
    )  # fmt: skip


async def test_a_clip_is_served_with_the_token_and_byte_ranges(tmp_path, small_clip, tiny_encoder):
    viewer = WebViewer(ServeConfig(port=0, token=TOKEN))
    arch = tmp_path / "arch"

    async def check(viewer):
        base = viewer.url.rstrip("/")
        async with aiohttp.ClientSession() as session:
            _, _, body = await _get(session, base + "/api/alerts", headers=BEARER)
            (alert,) = json.loads(body)["alerts"]
            url = base + alert["clip_url"]
            answers = {
                "none": await _get(session, url),
                "wrong": await _get(session, url, headers={"Authorization": "Bearer nope"}),
                "whole": await _get(session, url, headers=BEARER),
                "query": await _get(session, url, params={"token": TOKEN}),
                "range": await _get(session, url, headers={**BEARER, "Range": "bytes=100-299"}),
            }
            status = await _get(session, base + "/api/status", headers=BEARER)
        return alert, answers, json.loads(status[2])

    _, (alert, answers, status) = await run_and_check(_config(tmp_path, small_clip), tiny_encoder,
                                                      viewer, check)  # fmt: skip
    assert alert["clip"] == "clips/clip/00h00m00.000s-a-rabbit.mp4"
    assert alert["clip_url"] == "/archive/" + alert["clip"]
    data = (arch / alert["clip"]).read_bytes()
    assert answers["none"][0] == answers["wrong"][0] == 401  # the viewer's token rules
    assert b"token" in answers["none"][2]
    status_code, headers, body = answers["whole"]
    assert status_code == 200 and body == data and answers["query"][2] == data
    assert headers["Content-Type"] == "video/mp4" and headers["Accept-Ranges"] == "bytes"
    status_code, headers, body = answers["range"]
    assert status_code == 206 and body == data[100:300]
    assert headers["Content-Range"] == f"bytes 100-299/{len(data)}"
    archive = status["archive"]
    assert archive["path"] == str(arch) and archive["clips"] == {"written": 1, "failed": 0,
                                                                 "waiting": 0}  # fmt: skip
    assert archive["moments"]["written"] >= 1 and archive["recordings"] == {}


async def test_only_a_clip_inside_the_clips_folder_is_served(tmp_path, small_clip, tiny_encoder):
    viewer = WebViewer(ServeConfig(port=0))
    arch = tmp_path / "arch"
    targets = [
        "/archive/clips/clip/half.part.mp4",  # being written
        "/archive/clips/clip/link.mp4",  # leads out of the folder
        "/archive/clips/clip/missing.mp4",
        "/archive/clips/clip/..%2f..%2farchive.json",
        "/archive/clips/..%2f..%2f/archive.json",
        "/archive/clips/clip/.hidden.mp4",
        "/archive/clips/clip/clips.jsonl",
        "/archive/clips/../archive.json",
        "/archive/clips/clip/00h00m00.000s-a-rabbit.mp4/../../clips.jsonl",
    ]

    async def check(viewer):
        # Beside the run's clip: one being written, and a link out of the folder.
        (arch / "clips" / "clip" / "half.part.mp4").write_bytes(b"being written")
        (tmp_path / "secret.mp4").write_bytes(b"not a clip")
        os.symlink(tmp_path / "secret.mp4", arch / "clips" / "clip" / "link.mp4")
        port = port_of(viewer)
        return {target: await raw_request(port, f"GET {target} HTTP/1.1") for target in targets}

    served = "/archive/clips/clip/00h00m00.000s-a-rabbit.mp4"
    targets.append(served)
    _, answers = await run_and_check(_config(tmp_path, small_clip), tiny_encoder, viewer, check)
    status, body = answers.pop(served)
    assert status == 200 and body == (arch / served.removeprefix("/archive/")).read_bytes()
    for target, (status, body) in answers.items():
        assert status == 404, target
        assert b"not a clip" not in body and b"being written" not in body, target


async def test_a_viewer_without_an_archive_has_no_clips(tmp_path, small_clip, tiny_encoder):
    viewer = WebViewer(ServeConfig(port=0))

    async def check(viewer):
        return await raw_request(port_of(viewer), "GET /archive/clips/clip/x.mp4 HTTP/1.1")

    config = RunConfig(input=f"clip={small_clip}",
                       outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))  # fmt: skip
    _, (status, body) = await run_and_check(config, tiny_encoder, viewer, check)
    assert status == 404 and b"--archive" in body
