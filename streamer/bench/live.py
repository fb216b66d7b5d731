"""Live RTSP streams: delivered fps and end-to-end latency, then recovery from a server outage.

The pipeline runs on N live streams of an RTSP server the caller provides and starts
(`bench/live_streams.py` uses GStreamer's, from `bench.harness.rtsp`), each stream recorded to MP4
and JSON Lines, analysis at the default rate. Per stream:

  steady   delivered fps over the run, latency p50/p95/p99 (capture → frame written with its
           overlay, measured by the pipeline), drops;
  outage   the server is killed for a while and restarted: how long after its return each
           stream was online again, and how many reconnect attempts each logged.

The server object needs `url(name)`, `port`, `start()` and `kill()`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer import OutputConfig, RunConfig, run_pipeline

__all__ = ["OutageRow", "SteadyRow", "outage", "print_outage", "print_steady", "steady"]


@dataclass(frozen=True)
class SteadyRow:
    """One stream's steady-state figures."""

    stream: str
    frames: int
    fps: float
    analysed: int
    dropped: int
    latency_ms: tuple[float, float, float]


@dataclass(frozen=True)
class OutageRow:
    """One stream's recovery: seconds from the server's return to online (None: never)."""

    stream: str
    back_after_s: float | None
    reconnects: int


def _records(folder: Path, stream: str) -> list[dict]:
    path = folder / f"{stream}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _online_walls(folder: Path, stream: str) -> list[float]:
    return [r["wall"] for r in _records(folder, stream)
            if r["type"] == "status" and r["state"] == "online"]  # fmt: skip


async def _run(config: RunConfig, encoder, seconds: float, during=None):
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


def _config(server: Any, names: list[str], folder: Path) -> RunConfig:
    outputs = OutputConfig(video=str(folder / "{stream}.mp4"), jsonl=str(folder / "{stream}.jsonl"),
                           preset="ultrafast")  # fmt: skip
    return RunConfig(input=tuple(server.url(n) for n in names), outputs=outputs)


def steady(server: Any, names: list[str], encoder, seconds: float, folder: Path) -> list[SteadyRow]:
    """Run every stream for `seconds`; delivered fps counts from each stream's first frame."""
    summary, stopped = asyncio.run(_run(_config(server, names, folder), encoder, seconds))
    rows = []
    for s in summary.streams:
        online = _online_walls(folder, s.name)
        fps = s.frames / (stopped - online[0]) if online else 0.0
        rows.append(SteadyRow(s.name, s.frames, fps, s.analysed, s.dropped, s.latency_ms))
    return rows


def outage(
    server: Any, names: list[str], encoder, outage_s: float, folder: Path, settle_s: float = 6.0
) -> list[OutageRow]:
    """Kill the server `settle_s` into a run for `outage_s`, restart it, time the recovery."""
    restarted: dict[str, float] = {}
    streams = [f"127.0.0.1_{server.port}_{n}" for n in names]

    async def kill_and_restart():
        await asyncio.sleep(settle_s)
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

    summary, _ = asyncio.run(
        _run(_config(server, names, folder), encoder, 0, during=kill_and_restart)
    )
    rows = []
    for s in summary.streams:
        online = _online_walls(folder, s.name)
        back = online[1] - restarted["at"] if len(online) >= 2 else None
        rows.append(OutageRow(s.name, back, s.reconnects))
    return rows


def print_steady(rows: list[SteadyRow], seconds: float) -> None:
    print(f"\nphase 1: {len(rows)} streams for {seconds:.0f} s")
    print(f"{'stream':<24}{'frames':>8}{'fps':>8}{'analysed':>10}{'drops':>7}"
          f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")  # fmt: skip
    for r in rows:
        p50, p95, p99 = r.latency_ms
        print(f"{r.stream:<24}{r.frames:>8}{r.fps:>8.1f}{r.analysed:>10}{r.dropped:>7}"
              f"{p50:>8.0f}{p95:>8.0f}{p99:>8.0f}")  # fmt: skip


def print_outage(rows: list[OutageRow], outage_s: float) -> None:
    print(f"\nphase 2: server killed for {outage_s:.0f} s, then restarted")
    print(f"{'stream':<24}{'back after restart':>20}{'reconnect attempts':>20}")
    for r in rows:
        back = f"{r.back_after_s:.1f} s" if r.back_after_s is not None else "never"
        print(f"{r.stream:<24}{back:>20}{r.reconnects:>20}")
