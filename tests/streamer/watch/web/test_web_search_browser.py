"""The archive's search page in a real headless Chromium: an archive made by real runs (a clip
file, then a real RTSP stream recorded in segments), served by `streamer serve --archive` as a
subprocess with a token; the page searches, draws the moments, and clicking one plays its
video from that moment."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bench.harness.browser import Chromium, Page, chromium_path
from bench.harness.rtsp import free_port
from streamer import RunConfig, run_pipeline
from streamer.archive.options import ArchiveConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "page-t0ken"
VIDEO = "document.getElementById('video')"


async def _archive(folder: Path, clip: Path, rtsp_url: str, encoder) -> None:
    """A file run, then 7 s of a live run, into one archive."""
    files = RunConfig(input=f"twelve={clip}", archive=ArchiveConfig(str(folder), index_every_s=1))
    await run_pipeline(files, encoder=encoder)
    recorded = ArchiveConfig(str(folder), segment_s=2.0, index_every_s=1.0)
    live = RunConfig(input=f"door={rtsp_url}", archive=recorded)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(7.0, stop.set)
    await run_pipeline(live, encoder=encoder, stop=stop)


async def _serve(folder: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamer", "serve", "--archive", str(folder),
        "--serve", f"127.0.0.1:{port}", "--serve-token", TOKEN, "--device", "cpu",
        stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        while True:
            assert proc.returncode is None, "streamer serve ended before serving"
            try:
                async with session.get(base + "healthz", params={"token": TOKEN}) as response:
                    assert response.status == 200
                    return proc, base
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.2)


async def _play(page: Page, stream: str, lowest: float, highest: float) -> float:
    """Click the moment of `stream` with the largest offset in [lowest, highest]; wait until
    the player is there, playing; the moment's offset."""
    offset = await page.evaluate(f"""(() => {{
        const cards = [...document.querySelectorAll('.hit[data-stream="{stream}"][data-offset]')]
            .filter((c) => +c.dataset.offset >= {lowest} && +c.dataset.offset <= {highest});
        if (!cards.length) return null;
        cards.sort((a, b) => b.dataset.offset - a.dataset.offset);
        cards[0].querySelector('.open').click();
        return +cards[0].dataset.offset;
    }})()""")
    assert offset is not None, f"no playable moment of {stream} in {lowest}..{highest} s"
    near = f"Math.abs({VIDEO}.currentTime - {offset}) <= 1"
    await page.wait_for(f"{VIDEO}.readyState >= 2 && !{VIDEO}.seeking && {near}", 30,
                        f"{stream}'s video at {offset} s")  # fmt: skip
    await page.wait_for(f"!{VIDEO}.paused || {VIDEO}.ended", 10, f"{stream}'s video plays")
    return offset


def _keep(png: bytes, tmp_path: Path) -> None:
    shot = tmp_path / "search_page.png"
    shot.write_bytes(png)
    folder = os.environ.get("STREAMER_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


async def test_the_search_page_finds_moments_and_plays_each_from_its_moment(
    tmp_path, twelve_second_clip, rtsp_server, tiny_encoder
):
    if chromium_path() is None:  # CI installs it (scripts/setup.sh --test): a failure, no skip
        pytest.fail("chromium is missing: run `bash scripts/setup.sh --test` (apt: chromium)")
    folder = tmp_path / "arch"
    await _archive(folder, twelve_second_clip, rtsp_server.url("cam2"), tiny_encoder)
    proc, base = await _serve(folder)
    try:
        async with Chromium.launch(width=1280, height=900) as browser:
            page = await browser.new_page()
            await page.goto(base + "search")
            assert "401" in await page.evaluate("document.body.innerText")  # the token rule
            await page.goto(f"{base}?token={TOKEN}")  # `/` leads to the search page
            await page.wait_for("document.getElementById('archive').textContent"
                                ".includes('moments of 2 streams')", 30)  # fmt: skip
            said = await page.evaluate("""(() => {
                document.getElementById('q').value = 'a rabbit';
                document.getElementById('k').value = '100';
                document.getElementById('search').requestSubmit();
                return document.getElementById('status').textContent;
            })()""")
            assert "loading the archive's encoder" in said  # the first search says why it waits
            count = await page.wait_for("document.querySelectorAll('.hit').length", 60, "moments")
            await page.wait_for("[...document.querySelectorAll('.hit .thumb')]"
                                ".every((i) => i.complete && i.naturalWidth > 0)", 10,
                                "every thumbnail drawn")  # fmt: skip
            streams = await page.evaluate(
                "[...new Set([...document.querySelectorAll('.hit')].map((c) => c.dataset.stream))]"
            )
            status = await page.evaluate("document.getElementById('status').textContent")
            file_offset = await _play(page, "twelve", 3.0, 10.0)  # far enough in to need a seek
            live_offset = await _play(page, "door", 0.0, 10.0)  # a recording segment
            playing = await page.evaluate("document.getElementById('playing').textContent")
            png = await page.screenshot()
            address = await page.evaluate("location.search")  # the search is in the address
            # An address with a search in it fills the form and runs it.
            await page.goto(f"{base}search?token={TOKEN}&q=a+rabbit&stream=door&k=4")
            shared = await page.wait_for("document.querySelectorAll('.hit').length", 60, "hits")
            shared_streams = await page.evaluate(
                "[...document.querySelectorAll('.hit')].map((c) => c.dataset.stream)"
            )
            form = await page.evaluate(
                "['q', 'stream', 'k'].map((id) => document.getElementById(id).value)"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        stderr = await asyncio.wait_for(proc.stderr.read(), 30)
        await proc.wait()
    _keep(png, tmp_path)
    assert not page.errors, page.errors  # the page's script ran without an uncaught exception
    assert count >= 15 and sorted(streams) == ["door", "twelve"], (count, streams)
    assert status.startswith(f"{count} moments in")
    assert file_offset >= 3.0 and live_offset >= 0.0
    assert playing.startswith("door · ")
    assert "q=a+rabbit" in address and "k=100" in address and f"token={TOKEN}" in address
    assert shared == 4 and set(shared_streams) == {"door"} and form == ["a rabbit", "door", "4"]
    assert proc.returncode == 143, stderr.decode()
    assert TOKEN not in stderr.decode()  # the token is not logged
