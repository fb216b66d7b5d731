"""The viewer page in a real headless Chromium (Debian's package) during a live run: the video
shows frames and a caption the pipeline made appears; the screenshot is kept as an artefact."""

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from live_helpers import wait_until
from PIL import Image, ImageStat

from bench.harness.browser import Chromium, chromium_path
from bench.harness.lmstudio import LmStudioDouble
from streamer import CaptionPolicy, OutputConfig, RunConfig, run_pipeline
from streamer.config import ServeConfig
from streamer.core.events import Observer
from streamer.llm import LlmConfig
from streamer.watch.web import WebViewer

pytestmark = pytest.mark.integration

TOKEN = "browser-test-token"
SENTENCES = ("A big white rabbit stretches in a sunny meadow.", "A rabbit stands by a rock.")


class RunHolder(Observer):
    """Keeps the run, to find the viewer the configuration made (`--serve`)."""

    run = None

    async def start(self, run) -> None:
        self.run = run

    def viewer(self) -> WebViewer | None:
        if self.run is None:
            return None
        return next((o for o in self.run.observers.items if isinstance(o, WebViewer)), None)


def _keep(png: bytes, tmp_path: Path) -> Path:
    shot = tmp_path / "web_viewer.png"
    shot.write_bytes(png)
    folder = os.environ.get("STREAMER_TEST_ARTIFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)
    return shot


@pytest.fixture
async def double():
    server = LmStudioDouble(answer=lambda body, count: SENTENCES[count % 2])
    await server.start()
    yield server
    await server.stop()


async def test_the_page_shows_the_live_video_and_the_pipelines_captions(
    tmp_path, long_clip, tiny_encoder, double
):
    if chromium_path() is None:  # CI installs it (scripts/setup.sh --test): a failure, no skip
        pytest.fail("chromium is missing: run `bash scripts/setup.sh --test` (apt: chromium)")
    jsonl = tmp_path / "cam.jsonl"
    config = RunConfig(
        input=f"cam={long_clip}", live=True, outputs=OutputConfig(jsonl=str(jsonl)),
        serve=ServeConfig(port=0, token=TOKEN), llm=LlmConfig(url=double.url),
        captions=CaptionPolicy(1.0, 3.0, 1e-9),
    )  # fmt: skip
    holder = RunHolder()
    stop = asyncio.Event()
    async with Chromium.launch(width=1280, height=800) as browser:
        page = await browser.new_page()
        run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                               observers=[holder]))  # fmt: skip
        try:
            await wait_until(lambda: holder.viewer() is not None or run.done(), 60, "viewer up")
            url = holder.viewer().url
            await page.goto(url)
            refused = await page.evaluate("document.body.innerText")
            assert "401" in refused and "token" in refused  # no page without the token
            await page.goto(f"{url}?token={TOKEN}&view=mjpeg")  # WebRTC: test_web_webrtc
            video = "document.querySelector('[data-stream=\"cam\"] img.video')"
            await page.wait_for(f"{video}?.naturalWidth > 0", 30, "the video shows a frame")
            await wait_until(lambda: _llm_captions(jsonl), 30, "a caption from the pipeline")
            caption = _llm_captions(jsonl)[0]
            history = "document.querySelector('[data-stream=\"cam\"] .history').innerText"
            await page.wait_for(f"{history}.includes({json.dumps(caption)})", 30, caption)
            stats = "document.querySelector('[data-stream=\"cam\"] .stats').innerText"
            await page.wait_for(f"{stats}.includes('damaged 0')", 10, "the damaged count")
            await asyncio.sleep(0.5)  # let the video show a frame drawn with that caption
            shown = await page.evaluate(
                "document.querySelector('[data-stream=\"cam\"] .caption-text').textContent"
            )
            box = await page.evaluate(f"(r => [r.x, r.y, r.width, r.height])"
                                      f"({video}.getBoundingClientRect())")  # fmt: skip
            size = await page.evaluate(f"[{video}.naturalWidth, {video}.naturalHeight]")
            png = await page.screenshot()
        finally:
            stop.set()
            summary = await asyncio.wait_for(run, 60)
    shot = _keep(png, tmp_path)
    assert not page.errors  # the page's script ran without an uncaught exception
    assert shown in SENTENCES and size == [1280, 720]
    image = Image.open(shot)
    assert image.format == "PNG" and image.size[0] == 1280 and len(png) > 50_000
    x, y, width, height = (round(v) for v in box)
    assert width > 300 and height > 150
    video_pixels = image.convert("RGB").crop((x, y, x + width, y + height))
    assert max(ImageStat.Stat(video_pixels).stddev) > 20  # a picture, not a blank box
    assert summary.frames > 0 and summary.captions >= 1


def _llm_captions(jsonl: Path) -> list[str]:
    """LLM captions the run has written so far (whole lines only: the file is being written)."""
    if not jsonl.exists():
        return []
    lines = jsonl.read_text(encoding="utf-8").split("\n")[:-1]
    records = [json.loads(line) for line in lines]
    return [r["text"] for r in records if r["type"] == "caption" and r["source"] == "llm"]
