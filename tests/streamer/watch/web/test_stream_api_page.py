"""The viewer page follows the stream API, in a real headless Chromium: a stream added while
the run runs gets its card and its video; a removed one's card goes."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from live_helpers import wait_until

from bench.harness.browser import Chromium, chromium_path
from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.config import ServeConfig
from streamer.watch.web import WebViewer

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TOKEN = "pa9e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CARDS = "[...document.querySelectorAll('[data-stream]')].map(n => n.dataset.stream)"


async def test_the_page_shows_a_stream_added_and_drops_one_removed(
    tmp_path, rtsp_server, tiny_encoder
):
    if chromium_path() is None:  # CI installs it (scripts/setup.sh --test): a failure, no skip
        pytest.fail("chromium is missing: run `bash scripts/setup.sh --test` (apt: chromium)")
    config = RunConfig(
        input=f"cam1={rtsp_server.url('cam1')}",
        outputs=OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl")),
    )
    viewer = WebViewer(ServeConfig(port=0, token=TOKEN))
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[viewer])
    )
    try:
        # the url, not the run: the viewer has the run before its server listens
        await wait_until(lambda: viewer.url is not None or run.done(), 60, "the viewer is up")
        if run.done():
            run.result()  # the run's own error, not a missing url
        url = viewer.url.rstrip("/")
        async with (
            Chromium.launch(width=1280, height=800) as browser,
            aiohttp.ClientSession(headers=AUTH) as http,
        ):
            page = await browser.new_page()
            await page.goto(f"{url}/?token={TOKEN}&view=mjpeg")  # its <img>, not WebRTC
            await page.wait_for(f"JSON.stringify({CARDS}) === '[\"cam1\"]'", 30, "cam1's card")
            body = {"name": "cam2", "input": rtsp_server.url("cam2")}
            async with http.post(f"{url}/api/streams", json=body) as answer:
                assert answer.status == 201, await answer.text()
            video = "document.querySelector('[data-stream=\"cam2\"] img.video')"
            await page.wait_for(f"{video}?.naturalWidth > 0", 30, "cam2's video in the page")
            async with http.delete(f"{url}/api/streams/cam2") as answer:
                assert answer.status == 200, await answer.text()
            await page.wait_for(f"JSON.stringify({CARDS}) === '[\"cam1\"]'", 15, "cam2's card gone")
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
