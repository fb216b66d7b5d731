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
        llm=None,  # captions from tags: the page's history has some of each stream's
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
            history = "document.querySelector('[data-stream=\"cam2\"] .history li')"
            await page.wait_for(f"{history} !== null", 60, "a caption of cam2")
            async with http.delete(f"{url}/api/streams/cam2") as answer:
                assert answer.status == 200, await answer.text()
            await page.wait_for(f"JSON.stringify({CARDS}) === '[\"cam1\"]'", 15, "cam2's card gone")
            await _a_new_page_shows_no_card_of_the_removed_stream(browser, url)
            stop.set()  # the run ends while the page is open: it says so, the video stays
            await page.wait_for("document.getElementById('connection').textContent === "
                                "'run ended'", 30, "the page says the run ended")  # fmt: skip
            state = "document.querySelector('[data-stream=\"cam1\"] .state').textContent"
            assert await page.evaluate(state) == "stopped"
            await asyncio.sleep(2.5)  # past the page's retry delay: no broken image comes
            cam1 = "document.querySelector('[data-stream=\"cam1\"] img.video')"
            note = "document.querySelector('.view-note').textContent"
            shown = await page.evaluate(f"[{cam1}.hidden, {cam1}.naturalWidth, {note}]")
            assert shown[1] > 0 if not shown[0] else shown[2] == "the run has ended", shown
            assert await page.evaluate("document.getElementById('connection').textContent") == (
                "run ended"
            )
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)


async def _a_new_page_shows_no_card_of_the_removed_stream(browser, url: str) -> None:
    """The page's caption history replays the removed stream's captions: they bring no card
    back (it came for a second, asking for the stream's video: 404s)."""
    page = await browser.new_page()
    seen = """window.seen = []; document.addEventListener("DOMContentLoaded", () =>
      new MutationObserver(() => document.querySelectorAll('[data-stream]').forEach((n) => {
        if (!window.seen.includes(n.dataset.stream)) window.seen.push(n.dataset.stream); }))
      .observe(document.getElementById('streams'), { childList: true }));"""
    await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": seen})
    await page.goto(f"{url}/?token={TOKEN}&view=mjpeg")
    await page.wait_for(f"JSON.stringify({CARDS}) === '[\"cam1\"]'", 30, "cam1's card")
    replayed = "[...document.querySelectorAll('.history li')].length"
    await page.wait_for(f"{replayed} > 0", 30, "the history replayed")
    await asyncio.sleep(1.5)  # a status event or two later
    assert await page.evaluate("window.seen") == ["cam1"]
