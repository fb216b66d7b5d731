"""The web viewer costs the video nothing: 4 live streams with the page open and closed.

Streams --streams RTSP test patterns from GStreamer's server on loopback through the pipeline
with the web viewer on (`--serve`), MP4 and JSON Lines written per stream, and alternates
segments (closed, open, open, closed, ...: drift cancels) where a real headless Chromium
either has the viewer page open (every stream's MJPEG video, SSE captions and status) or no
page at all. Reports the delivered fps and latency of each stream in both conditions and
their ratio. Chromium runs on the same machine, as a wall display beside the server would.

Run:  python bench/viewer_load.py [--streams 4] [--seconds 120] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _live_setup import abba, mean, pattern_server, random_encoder  # noqa: E402

from bench._entry import run_script  # noqa: E402
from bench.harness.browser import Chromium  # noqa: E402
from bench.harness.rtsp import free_port  # noqa: E402
from streamer import OutputConfig, RunConfig, ServeConfig, run_pipeline  # noqa: E402


async def one_segment(urls, encoder, seconds: float, folder: Path, page_open: bool):
    port = free_port()
    config = RunConfig(
        input=tuple(urls),
        outputs=OutputConfig(
            video=str(folder / "{stream}.mp4"), jsonl=str(folder / "{stream}.jsonl"),
            preset="ultrafast",
        ),
        serve=ServeConfig(port=port),
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=encoder, stop=stop))
    async with contextlib.AsyncExitStack() as stack:
        if page_open:
            browser = await stack.enter_async_context(Chromium.launch())
            page = await browser.new_page()
            await asyncio.sleep(2.0)  # the server binds as the run starts
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for(
                "[...document.querySelectorAll('img')].filter(i => i.naturalWidth > 0).length"
                f" >= {len(urls)}", 30, "every stream's video on the page",
            )  # fmt: skip
        await asyncio.sleep(seconds)
        stop.set()
        return await task


async def main_async(args) -> None:
    encoder = random_encoder(args.encoder)
    server, names = pattern_server(args.streams, args.size)
    results: dict[str, list] = {"page closed": [], "page open": []}
    try:
        urls = [f"{n}={server.url(n)}" for n in names]
        segment = args.seconds / args.rounds
        for label in abba("page closed", "page open", args.rounds):
            with tempfile.TemporaryDirectory() as folder:
                started = time.monotonic()
                summary = await one_segment(urls, encoder, segment, Path(folder),
                                            label == "page open")  # fmt: skip
                results[label].append((summary, time.monotonic() - started))
    finally:
        server.kill()
    _report(results, args)


def _report(results, args) -> None:
    print(f"\n{'run':<12}{'seg':>4} {'stream':<8}{'frames':>8}{'fps':>7}{'dropped':>9}"
          f"{'p50 ms':>8}{'p99 ms':>8}")  # fmt: skip
    per: dict[tuple[str, str], list] = {}
    for label, runs in results.items():
        for seg, (summary, _wall) in enumerate(runs):
            for s in summary.streams:
                # Delivered rate over the run's own time (start of the streams to files closed);
                # a segment with the page open runs longer by the browser's start-up.
                rate = s.frames / summary.wall_s
                p50, _, p99 = s.latency_ms
                per.setdefault((label, s.name), []).append((rate, p50, p99, s.dropped))
                print(f"{label:<12}{seg + 1:>4} {s.name:<8}{s.frames:>8}{rate:>7.1f}"
                      f"{s.dropped:>9}{p50:>8.1f}{p99:>8.1f}")  # fmt: skip

    names = sorted({name for _, name in per})
    ratios = []
    for name in names:
        closed, opened = per[("page closed", name)], per[("page open", name)]
        ratio = mean(opened, 0) / mean(closed, 0)
        ratios.append(ratio)
        print(
            f"{name}: page open / closed, mean over {len(opened)} segment(s): fps "
            f"{mean(opened, 0):.2f}/{mean(closed, 0):.2f} = {ratio:.3f}, p50 "
            f"{mean(opened, 1):.1f}/{mean(closed, 1):.1f} ms, p99 {mean(opened, 2):.1f}/"
            f"{mean(closed, 2):.1f} ms, dropped {mean(opened, 3):.0f}/{mean(closed, 3):.0f}"
        )
    print(f"delivered fps ratio (page open / closed), all streams: min {min(ratios):.3f}, "
          f"mean {sum(ratios) / len(ratios):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--seconds", type=float, default=120.0, help="per condition, in all")
    parser.add_argument("--rounds", type=int, default=2, help="segments per condition (ABBA)")
    parser.add_argument("--encoder", default="clip:tiny")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.streams} RTSP streams "
        f"{args.size} 25 fps; {args.seconds:g} s per condition in {args.rounds} segment(s); "
        f"encoder {args.encoder} (random weights) on cpu; Chromium headless on the same machine"
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    run_script(main)
