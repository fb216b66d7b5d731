"""The viewer's latency and bandwidth, WebRTC beside MJPEG, in one run at 720p.

A 1280x720 25 fps RTSP test pattern (GStreamer on loopback) runs through the pipeline with the
web viewer, its clock stamp on (`RtcLimits(stamp_clock=True)`: each frame the viewer gets
carries the wall time it was drawn at). A real headless Chromium shows the page and reads
each shown frame's stamp back from a canvas (the page's own meter, `rtc.js`): the time from
the frame drawn to the frame shown, per frame. Segments alternate WebRTC and MJPEG (A B B A),
each after a warm-up. Bandwidth: WebRTC's from the browser's `getStats()` (bytes received),
MJPEG's from a second client reading the same MJPEG response the page reads.

Not counted: the source to the frame drawn (decoding, the overlay), which both share; the
run's own `latency_ms` (from frame arrival to written) is printed beside.

Run:  python bench/webrtc_latency.py [--seconds 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _live_setup import abba, pattern_server, random_encoder  # noqa: E402

from bench._entry import run_script  # noqa: E402
from bench.harness.browser import Chromium  # noqa: E402
from streamer import OutputConfig, RunConfig, run_pipeline  # noqa: E402
from streamer.config import ServeConfig  # noqa: E402
from streamer.watch.web import WebViewer  # noqa: E402
from streamer.watch.web.webrtc import RtcLimits  # noqa: E402

CARD = "document.querySelector('[data-stream=\"cam1\"]')"
WEBRTC_BYTES = """(async () => {
  const pc = window.streamerRtc.connections.cam1;
  if (!pc) return [0, 0];
  let out = [0, 0];
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") out = [s.bytesReceived, s.framesDecoded];
  });
  return out;
})()"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def mjpeg_bytes(http, url: str, seconds: float) -> tuple[int, int]:
    """Bytes and parts one MJPEG client receives in `seconds`."""
    total = parts = 0
    async with http.get(f"{url}streams/cam1/mjpeg") as response:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(response.content.readany(), 1.0)
            except TimeoutError:
                continue
            total += len(chunk)
            parts += chunk.count(b"--frame\r\n")
    return total, parts


async def segment(page, http, viewer, mode: str, warmup: float, seconds: float) -> dict:
    """Show `mode` for `warmup` + `seconds`; the latencies and bandwidth of the measured part."""
    await page.evaluate(f"""(() => {{ const s = {CARD}.querySelector('select.view');
        s.value = '{mode}'; s.dispatchEvent(new Event('change')); }})()""")
    await asyncio.sleep(warmup)
    note = await page.evaluate(f"{CARD}.querySelector('.view-note').textContent")
    if mode == "webrtc" and note:
        raise SystemExit(f"WebRTC fell back to MJPEG: {note}")
    await page.evaluate(f"window.streamerLatency.cam1.{mode}.length = 0")
    if mode == "webrtc":
        start = await page.evaluate(WEBRTC_BYTES)
        await asyncio.sleep(seconds)
        end = await page.evaluate(WEBRTC_BYTES)
        size, frames = end[0] - start[0], end[1] - start[1]
        codec = viewer.status()["webrtc"]["streams"]["cam1"]["codec"]
    else:
        size, frames = await mjpeg_bytes(http, viewer.url, seconds)
        codec = "JPEG"
    samples = await page.evaluate(f"window.streamerLatency.cam1.{mode}")
    return {"mode": mode, "codec": codec, "samples": samples, "bits_s": size * 8 / seconds,
            "fps": frames / seconds}  # fmt: skip


async def measure(args) -> tuple[list[dict], dict]:
    import aiohttp

    server, names = pattern_server(1, "1280x720")
    viewer = WebViewer(ServeConfig(port=0), webrtc=RtcLimits(stamp_clock=True))
    try:
        with tempfile.TemporaryDirectory() as folder:
            jsonl = OutputConfig(jsonl=str(Path(folder) / "cam1.jsonl"))
            config = RunConfig(input=f"cam1={server.url(names[0])}", outputs=jsonl)
            stop = asyncio.Event()
            run = asyncio.create_task(run_pipeline(
                config, encoder=random_encoder(args.encoder), stop=stop, observers=[viewer]
            ))  # fmt: skip
            try:
                while viewer.url is None and not run.done():
                    await asyncio.sleep(0.2)
                async with Chromium.launch() as browser, aiohttp.ClientSession() as http:
                    page = await browser.new_page()
                    await page.goto(viewer.url)
                    await page.wait_for("window.streamerLatency.cam1", 30, "the meter")
                    rows = [
                        await segment(page, http, viewer, mode, args.warmup, args.seconds)
                        for mode in abba("webrtc", "mjpeg", args.rounds)
                    ]
                    status = viewer.status()
            finally:
                stop.set()
                await run
    finally:
        server.kill()
    return rows, status


def report(rows: list[dict], status: dict, args) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
          f"1280x720 25 fps RTSP pattern, {args.seconds:g} s per segment after {args.warmup:g} s "
          f"warm-up, segments {' '.join(r['mode'] for r in rows)}")  # fmt: skip
    print(f"{'view':15} {'frames':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'fps':>6} "
          f"{'Mbit/s':>7}")  # fmt: skip
    for mode in ("webrtc", "mjpeg"):
        mine = [r for r in rows if r["mode"] == mode]
        samples = [ms for r in mine for ms in r["samples"]]
        if not samples:
            print(f"{mode:15} no frame read back")
            continue
        label = f"{mode} ({mine[0]['codec']})"
        bits = sum(r["bits_s"] for r in mine) / len(mine)
        fps = sum(r["fps"] for r in mine) / len(mine)
        print(f"{label:15} {len(samples):7d} {percentile(samples, 0.5):7.0f} "
              f"{percentile(samples, 0.95):7.0f} {max(samples):7.0f} {fps:6.1f} "
              f"{bits / 1e6:7.2f}")  # fmt: skip
    lat = status["streams"][0]["latency_ms"]
    print(f"the run's own latency (frame in -> written), p50/p95: "
          f"{lat['p50']:.0f}/{lat['p95']:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per segment")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring")
    parser.add_argument("--rounds", type=int, default=1, help="A B pairs (A B B A ...)")
    parser.add_argument("--encoder", default="clip:tiny", help="random-weight encoder")
    args = parser.parse_args()
    rows, status = asyncio.run(measure(args))
    report(rows, status, args)


if __name__ == "__main__":
    run_script(main)
