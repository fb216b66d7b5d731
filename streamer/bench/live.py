"""Live streams: delivered fps and end-to-end latency, then recovery from a server outage.

The pipeline runs in this process on N live inputs: streams of an RTSP server the caller
provides and starts (`bench/live_streams.py` uses GStreamer's, from `bench.harness.rtsp`), or
files played as live cameras (`LiveRun(live=True)`: paced at their frame rate, freshest frame
wins; `bench/gpu_suite.py`'s streams section). Per stream:

  steady   delivered fps over a window that opens once every stream has delivered a frame,
           latency p50/p95/p99 (capture → frame written, measured by the pipeline), drops;
           and the process's CPU seconds over that window (`measure`);
  outage   the server is killed for a while and restarted: how long after its return each
           stream was online again, and how many reconnect attempts each logged.

The server object of `outage` needs `url(name)`, `port`, `start()` and `kill()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer import AnalysisConfig, OutputConfig, RunConfig, RunSummary, run_pipeline
from streamer.core.events import Observer
from streamer.sources import SourceOptions

__all__ = [
    "LiveRun",
    "OutageRow",
    "SteadyResult",
    "SteadyRow",
    "measure",
    "outage",
    "print_outage",
    "print_steady",
    "steady",
]


@dataclass(frozen=True)
class LiveRun:
    """How the streams of `steady` and `measure` run.

    Attributes:
        live: the run's contract: None by source kind (RTSP is live); True plays files as
            live cameras, paced at their frame rate, freshest frame winning.
        video: record each stream to MP4 (x264 ultrafast) besides its JSON Lines; False
            writes JSON Lines only (then nothing converts or draws the frames not analysed).
        hwaccel: where to decode: "none", "cuda" (NVDEC) or "auto" (`SourceOptions.hwaccel`).
        decode_workers: decode processes, a number or "auto" (`SourceOptions.decode_workers`).
        analysis: the analysis settings (rate, vocabulary, text-embedding cache).
        settle_s: the longest wait for every stream's first frame before the window opens.
    """

    live: bool | None = None
    video: bool = True
    hwaccel: str = "none"
    decode_workers: int | str = 0
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    settle_s: float = 60.0


@dataclass(frozen=True)
class SteadyRow:
    """One stream's steady-state figures."""

    stream: str
    frames: int
    fps: float
    analysed: int
    dropped: int
    latency_ms: tuple[float, float, float]
    error: str | None = None


@dataclass(frozen=True)
class SteadyResult:
    """What `measure` saw: a row per stream, the window and the CPU time spent in it.

    Attributes:
        rows: one per stream, in input order.
        window_s: the measured window's length (shorter than asked when every stream ended
            first, e.g. files that ran out).
        settle_s: from the run's start to the window's (every stream delivering).
        cpu_s: CPU seconds (user + system, every thread) this process spent in the window;
            decode worker processes are not in it (`child_cpu_s`).
        child_cpu_s: CPU seconds of the run's ended child processes (decode workers), over
            the whole run, not only the window.
    """

    rows: list[SteadyRow]
    window_s: float
    settle_s: float
    cpu_s: float
    child_cpu_s: float


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


class _Window(Observer):
    """Each stream's delivered frames over a window that opens once every stream delivered
    one (or `settle_s` passed) and lasts `seconds`; told the run's streams at its start."""

    def __init__(self) -> None:
        self.streams: list[Any] = []
        self.started = time.monotonic()
        self.opened: tuple[float, dict[str, int], float] | None = None
        self.closed: tuple[float, dict[str, int], float] | None = None

    async def start(self, run: Any) -> None:
        self.streams = list(run.streams)

    def reading(self) -> tuple[float, dict[str, int], float]:
        """(monotonic time, delivered frames per stream, this process's CPU seconds)."""
        counts = {s.name: s.stats.delivered for s in self.streams}
        return time.monotonic(), counts, time.process_time()

    async def watch(self, seconds: float, settle_s: float) -> None:
        deadline = self.started + settle_s
        while time.monotonic() < deadline and not (
            self.streams and all(self.reading()[1].values())
        ):
            await asyncio.sleep(0.05)
        self.opened = self.reading()
        await asyncio.sleep(seconds)
        self.closed = self.reading()


async def _run(
    config: RunConfig, encoder, during: Callable[[], Awaitable[None]], observers=()
) -> RunSummary:
    """Run the pipeline while `during` runs, then stop it; a run that ends (or fails) first
    ends the wait, and an error of `during` is raised after the run stopped."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_pipeline(config, encoder=encoder, stop=stop, observers=observers)
    )
    waiting = asyncio.create_task(during())
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        waiting.cancel()
    summary = await task
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    return summary


def _config(inputs: Sequence[str], folder: Path, run: LiveRun) -> RunConfig:
    video = str(folder / "{stream}.mp4") if run.video else None
    outputs = OutputConfig(video=video, jsonl=str(folder / "{stream}.jsonl"), preset="ultrafast")
    sources = SourceOptions(hwaccel=run.hwaccel, decode_workers=run.decode_workers)
    return RunConfig(input=tuple(inputs), outputs=outputs, live=run.live, sources=sources,
                     analysis=run.analysis)  # fmt: skip


def measure(
    inputs: Sequence[str], encoder, seconds: float, folder: Path, run: LiveRun | None = None
) -> SteadyResult:
    """Run every input live, measure `seconds` once every stream delivers, then stop.

    Args:
        inputs: the run's inputs (URLs, or files with `run.live`); each becomes a stream.
        encoder: an encoder already loaded, shared by every stream.
        seconds: the measured window.
        folder: where each stream's outputs go (`{stream}.jsonl`, `{stream}.mp4`).
        run: how the streams run (None: `LiveRun()`).
    """
    run = run or LiveRun()
    window = _Window()
    before = os.times()
    summary = asyncio.run(
        _run(_config(inputs, folder, run), encoder,
             lambda: window.watch(seconds, run.settle_s), [window])
    )  # fmt: skip
    after = os.times()
    # A window the run's end cut short (every input ended) closes with the final counts.
    ended = (time.monotonic(), {s.name: s.frames for s in summary.streams}, window.reading()[2])
    opened, closed = window.opened or ended, window.closed or ended
    span = max(closed[0] - opened[0], 1e-9)
    rows = [
        SteadyRow(s.name, s.frames, (closed[1].get(s.name, 0) - opened[1].get(s.name, 0)) / span,
                  s.analysed, s.dropped, s.latency_ms, s.error)
        for s in summary.streams
    ]  # fmt: skip
    children = after.children_user + after.children_system
    children -= before.children_user + before.children_system
    return SteadyResult(rows, span, opened[0] - window.started, closed[2] - opened[2], children)


def steady(
    inputs: Sequence[str], encoder, seconds: float, folder: Path, run: LiveRun | None = None
) -> list[SteadyRow]:
    """`measure`'s rows: a row per stream, delivered fps over the measured window."""
    return measure(inputs, encoder, seconds, folder, run).rows


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

    inputs = [server.url(n) for n in names]
    summary = asyncio.run(_run(_config(inputs, folder, LiveRun()), encoder, kill_and_restart))
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
