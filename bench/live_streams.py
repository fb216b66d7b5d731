"""Live RTSP streams: delivered fps and end-to-end latency, then recovery from a server outage.

Starts GStreamer's RTSP server on loopback (Debian's python3 with gi, as the tests do) serving N
live 25 fps test patterns, runs `streamer`'s pipeline on all of them in one process (each stream
recorded to MP4 + JSON Lines, analysis at the default rate), and reports per stream:

  phase 1 (steady): delivered fps over the run, latency p50/p95/p99 (capture → frame written
                    with its overlay, measured by the pipeline), drops;
  phase 2 (outage): the server is killed for --outage seconds and restarted; how long after
                    its return each stream was online again, and how many reconnect attempts
                    each logged.

Run:  python bench/live_streams.py [--streams 4] [--size 640x360] [--seconds 30] [--encoder default]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "streamer")]

from live_helpers import SYSTEM_PYTHON, RtspServer  # noqa: E402

from encoders import create_encoder  # noqa: E402
from streamer import OutputConfig, RunConfig, run_pipeline  # noqa: E402


def _records(folder: Path, stream: str) -> list[dict]:
    path = folder / f"{stream}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _online_walls(folder: Path, stream: str) -> list[float]:
    return [r["wall"] for r in _records(folder, stream)
            if r["type"] == "status" and r["state"] == "online"]  # fmt: skip


async def _run(config, encoder, seconds: float, during=None):
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=encoder, stop=stop))
    try:
        if during is not None:
            await during()
        else:
            await asyncio.sleep(seconds)
    finally:
        stop.set()
    return await task, time.time()


def _config(server: RtspServer, names: list[str], folder: Path) -> RunConfig:
    outputs = OutputConfig(video=str(folder / "{stream}.mp4"), jsonl=str(folder / "{stream}.jsonl"),
                           preset="ultrafast")  # fmt: skip
    return RunConfig(input=tuple(server.url(n) for n in names), outputs=outputs)


def steady(server, names, encoder, seconds, folder) -> None:
    summary, stopped = asyncio.run(_run(_config(server, names, folder), encoder, seconds))
    print(f"\nphase 1: {len(names)} streams for {seconds:.0f} s")
    print(f"{'stream':<24}{'frames':>8}{'fps':>8}{'analysed':>10}{'drops':>7}"
          f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")  # fmt: skip
    for s in summary.streams:
        online = _online_walls(folder, s.name)
        fps = s.frames / (stopped - online[0]) if online else 0.0
        p50, p95, p99 = s.latency_ms
        print(f"{s.name:<24}{s.frames:>8}{fps:>8.1f}{s.analysed:>10}{s.dropped:>7}"
              f"{p50:>8.0f}{p95:>8.0f}{p99:>8.0f}")  # fmt: skip


def outage(server, names, encoder, outage_s, folder) -> None:
    restarted = {}

    async def kill_and_restart():
        await asyncio.sleep(6)
        server.kill()
        await asyncio.sleep(outage_s)
        server.start()
        restarted["at"] = time.time()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            len(_online_walls(folder, n)) >= 2 for n in streams
        ):
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)

    streams = [f"127.0.0.1_{server.port}_{n}" for n in names]
    summary, _ = asyncio.run(
        _run(_config(server, names, folder), encoder, 0, during=kill_and_restart)
    )
    print(f"\nphase 2: server killed for {outage_s:.0f} s, then restarted")
    print(f"{'stream':<24}{'back after restart':>20}{'reconnect attempts':>20}")
    for s in summary.streams:
        online = _online_walls(folder, s.name)
        back = f"{online[1] - restarted['at']:.1f} s" if len(online) >= 2 else "never"
        print(f"{s.name:<24}{back:>20}{s.reconnects:>20}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--outage", type=float, default=5.0)
    parser.add_argument("--encoder", default="default", help="default | clip (tiny) | clip:MODEL")
    args = parser.parse_args()
    kind, _, model = args.encoder.partition(":")
    encoder = create_encoder(kind, model or ("tiny" if kind == "clip" else None),
                             weights="random", device="cpu")  # fmt: skip
    names = [f"cam{i + 1}" for i in range(args.streams)]
    server = RtspServer(SYSTEM_PYTHON, {n: f"pattern:{args.size}" for n in names})
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.streams} RTSP streams "
        f"{args.size} 25 fps from loopback; encoder {encoder.info.kind} {encoder.info.model} "
        f"(random weights) on cpu; outputs MP4 (x264 ultrafast) + JSONL per stream"
    )
    server.start()
    try:
        with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
            steady(server, names, encoder, args.seconds, Path(one))
            outage(server, names, encoder, args.outage, Path(two))
    finally:
        server.kill()


if __name__ == "__main__":
    main()
