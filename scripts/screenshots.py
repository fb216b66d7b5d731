"""Make the README's pictures from a real run: the web viewer page and one annotated frame.

    .venv/bin/python scripts/screenshots.py [--out docs/images]

Plays the sample clip (Big Buck Bunny) as two live streams through the whole pipeline with the
tiny random-weight CLIP (so the tags are noise, and the frames say so), serves them with the web
viewer, opens the page in headless Chromium (Debian's `chromium`) and saves:

    web_viewer.png       the page: both streams' video, captions, tags and status
    annotated_frame.png  one frame of the written video, overlay included

Both are kept under 300 KB (scaled down, then reduced to a palette if still larger).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402
from PIL import Image  # noqa: E402

import encoders  # noqa: E402
from bench.harness.browser import Chromium  # noqa: E402
from streamer import OutputConfig, RunConfig, run_pipeline  # noqa: E402
from streamer.config import ServeConfig  # noqa: E402
from streamer.core.events import Observer  # noqa: E402
from streamer.core.samples import sample_clip  # noqa: E402
from streamer.watch.web import WebViewer  # noqa: E402

MAX_BYTES = 300_000
STREAMS = ("front", "yard")


def small_png(image: Image.Image, width: int) -> bytes:
    """PNG bytes of `image` at most `width` wide and under MAX_BYTES."""
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    for candidate in (image, image.quantize(256, dither=Image.Dither.FLOYDSTEINBERG)):
        out = io.BytesIO()
        candidate.save(out, "PNG", optimize=True)
        if out.tell() < MAX_BYTES:
            return out.getvalue()
    raise RuntimeError(f"cannot get the picture under {MAX_BYTES} bytes; lower the width")


def frame_at(video: Path, seconds: float) -> Image.Image:
    """The first frame of `video` at or after `seconds`."""
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                return frame.to_image()
    raise RuntimeError(f"{video} is shorter than {seconds} s")


class Viewer(Observer):
    """Finds the viewer `--serve` made, once the run has started."""

    viewer: WebViewer | None = None

    async def start(self, run) -> None:
        self.viewer = next(o for o in run.observers.items if isinstance(o, WebViewer))


async def viewer_screenshot(config: RunConfig, encoder) -> tuple[bytes, object]:
    finder = Viewer()
    async with Chromium.launch(width=1280, height=760) as browser:
        page = await browser.new_page()
        run = asyncio.create_task(run_pipeline(config, encoder=encoder, observers=[finder]))
        while finder.viewer is None and not run.done():
            await asyncio.sleep(0.05)
        await page.goto(finder.viewer.url)
        for name in STREAMS:
            card = f"document.querySelector('[data-stream=\"{name}\"]')"
            await page.wait_for(f"{card}?.querySelector('img.video').naturalWidth > 0", 20)
            await page.wait_for(f"!!{card}.querySelector('.history li')", 20)
        await asyncio.sleep(1.5)  # a second of video and status after the first caption
        png = await page.screenshot()
        summary = await run
    return png, summary


async def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clip = sample_clip(REPO / ".cache" / "samples")
    encoder = encoders.create_encoder("clip", "tiny", weights="random", device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        config = RunConfig(
            input=tuple(f"{name}={clip}" for name in STREAMS), live=True,
            outputs=OutputConfig(video=str(Path(folder) / "{stream}.mp4"), preset="ultrafast"),
            serve=ServeConfig(port=0),
        )  # fmt: skip
        png, summary = await viewer_screenshot(config, encoder)
        frame = frame_at(Path(folder) / f"{STREAMS[0]}.mp4", 3.0)
    (out / "web_viewer.png").write_bytes(small_png(Image.open(io.BytesIO(png)), 1280))
    (out / "annotated_frame.png").write_bytes(small_png(frame, 960))
    for name in ("web_viewer.png", "annotated_frame.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1000} kB")
    print(f"from a run of {summary.frames} frames, {summary.captions} captions")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    asyncio.run(main(parser.parse_args().out))
