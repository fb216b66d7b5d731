"""Soak: live streams for a long run with the camera server restarted now and then; does
anything grow?

Runs the pipeline in this process on --streams RTSP test patterns from GStreamer's server on
loopback, kills and restarts the server every --restart-every seconds (the streams reconnect),
and samples every --sample-every seconds: resident memory (RSS), open file descriptors, threads
and asyncio tasks. After --warmup seconds it fits a straight line to each series and reports
its slope and the spread; it writes the samples (CSV), the summary (JSON) and a plot (PNG,
drawn with OpenCV) into --out.

Run:  python bench/soak.py --minutes 60 --streams 4 --out soak-results   (an hour, by hand)
      python bench/soak.py --minutes 3 --streams 2                        (a few minutes)
      python bench/soak.py --minutes 30 --churn 6 --mqtt --restart-every 0  (issue 17's soak)

`--churn S` also adds a stream through the viewer's stream API (POST /api/streams, with the
token, as a user's script would) and removes it S/2 seconds later (DELETE, which waits for its
outputs to finish), again and again; the samples are then taken right after each removal, so
every sample sees the same set of streams. `--mqtt` publishes the run's events to a real
mosquitto broker started here (Debian's package), Home Assistant discovery included: each
added stream publishes its entities and each removal clears them.

When RSS grows, `--tracemalloc` tells Python and NumPy allocations from native ones (FFmpeg,
torch, the C allocator): it starts tracing Python's allocator when the warm-up ends, and at the
end writes the 25 call sites holding the most memory allocated since then and still alive
(tracemalloc.txt): what grows is among them; frames in flight and replaced caches are too.
`--trim` calls glibc's malloc_trim(0) before each RSS sample, so memory freed but kept by the
allocator does not count as growth.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _live_setup import pattern_server, random_encoder  # noqa: E402
from harness.mosquitto import Mosquitto  # noqa: E402
from harness.rtsp import free_port  # noqa: E402

from bench._entry import run_script  # noqa: E402
from streamer import CaptionPolicy, OutputConfig, RunConfig, run_pipeline  # noqa: E402
from streamer.core.events import Observer  # noqa: E402
from streamer.core.retry import RetryPolicy  # noqa: E402
from streamer.sources import SourceOptions  # noqa: E402
from streamer.watch.mqtt.options import MqttConfig  # noqa: E402
from streamer.watch.web.options import ServeConfig  # noqa: E402

SERIES = ("rss_mb", "fds", "threads", "tasks")


@dataclass(frozen=True)
class Sample:
    t: float
    rss_mb: float
    fds: int
    threads: int
    tasks: int
    analysed: int
    restarts: int
    churns: int = 0  # streams added and removed through the API so far


class _Counter(Observer):
    analysed = 0

    def analysis(self, stream, annotation) -> None:
        self.analysed += 1


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _trim() -> None:
    """Give freed heap memory back to the kernel (glibc only; a no-op elsewhere)."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def growth(samples: list[Sample], warmup: float) -> dict[str, dict[str, float]]:
    """Per series after `warmup` s: the fitted slope per hour, min, max and the last value."""
    late = [s for s in samples if s.t >= warmup]
    out: dict[str, dict[str, float]] = {}
    if len(late) < 3:
        return out
    t = np.array([s.t for s in late])
    for name in SERIES:
        y = np.array([getattr(s, name) for s in late], dtype=float)
        slope = float(np.polyfit(t, y, 1)[0]) if np.ptp(t) > 0 else 0.0
        out[name] = {
            "slope_per_hour": round(slope * 3600, 3),
            "min": float(y.min()),
            "max": float(y.max()),
            "first": float(y[0]),
            "last": float(y[-1]),
        }
    return out


def plot(samples: list[Sample], warmup: float, path: Path, title: str) -> None:
    """Four stacked panels (one per series) against time, warm-up shaded; a PNG."""
    width, panel, margin = 900, 170, 60
    image = np.full((margin + panel * len(SERIES) + 30, width, 3), 255, np.uint8)
    cv2.putText(image, title, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    t = np.array([s.t for s in samples])
    t_max = max(float(t.max()), 1.0) if len(t) else 1.0
    x0, x1 = 80, width - 20
    for i, name in enumerate(SERIES):
        top = margin + i * panel
        y0, y1 = top + 10, top + panel - 30
        y = np.array([getattr(s, name) for s in samples], dtype=float)
        lo, hi = (float(y.min()), float(y.max())) if len(y) else (0.0, 1.0)
        pad = max((hi - lo) * 0.1, 1.0 if name != "rss_mb" else 5.0)
        lo, hi = lo - pad, hi + pad
        warm = int(x0 + (x1 - x0) * min(warmup / t_max, 1.0))
        cv2.rectangle(image, (x0, y0), (warm, y1), (235, 235, 235), -1)
        cv2.rectangle(image, (x0, y0), (x1, y1), (160, 160, 160), 1)
        label = f"{name}  {lo + pad:.0f} .. {hi - pad:.0f}"
        cv2.putText(image, label, (x0, y1 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip
        if len(y) > 1:
            xs = x0 + (x1 - x0) * t / t_max
            ys = y1 - (y1 - y0) * (y - lo) / (hi - lo)
            points = np.stack([xs, ys], axis=1).round().astype(np.int32)
            cv2.polylines(image, [points], False, (200, 80, 0), 2, cv2.LINE_AA)
    axis = f"time 0 .. {t_max:.0f} s (grey: warm-up, not judged)"
    cv2.putText(image, axis, (x0, image.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    cv2.imwrite(str(path), image)


TOKEN = "soak-token"  # the viewer's token, for the stream API's changes


class _Soak:
    """One soak run's state: the samples, the server restarts and the API churns so far."""

    def __init__(self, args, counter: _Counter) -> None:
        self.args = args
        self.counter = counter
        self.samples: list[Sample] = []
        self.restarts = 0
        self.churns = 0
        self.started = time.monotonic()
        self.tracing = False
        self.mqtt: dict[str, float] = {}  # the MQTT counters at the end (/metrics)

    def sample(self, out: Path) -> None:
        now = time.monotonic()
        if self.args.trim:
            _trim()
        if self.args.tracemalloc and not self.tracing and now - self.started >= self.args.warmup:
            tracemalloc.start(8)
            self.tracing = True
        self.samples.append(Sample(
            round(now - self.started, 1), round(_rss_mb(), 1), _fds(), threading.active_count(),
            len(asyncio.all_tasks()), self.counter.analysed, self.restarts, self.churns,
        ))  # fmt: skip
        print(f"{self.samples[-1]}", flush=True)


async def _churn(soak: _Soak, url: str, source: str, out: Path, end: float) -> None:
    """Add a stream through the API, remove it half a period later, sample; until `end`."""
    import aiohttp

    period = soak.args.churn
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        while time.monotonic() < end:
            await asyncio.sleep(period / 2)
            body = {"name": "churn", "input": source}
            async with http.post(f"{url}/api/streams", json=body) as answer:
                if answer.status != 201:
                    raise RuntimeError(f"adding a stream: {answer.status} {await answer.text()}")
            await asyncio.sleep(period / 2)
            async with http.delete(f"{url}/api/streams/churn") as answer:
                if answer.status != 200:
                    raise RuntimeError(f"removing it: {answer.status} {await answer.text()}")
            soak.churns += 1
            await asyncio.sleep(0.5)  # its last tasks and threads end
            soak.sample(out)


async def soak(args, out: Path) -> tuple[list[Sample], object, dict[str, float]]:
    encoder = random_encoder(args.encoder)
    server, names = pattern_server(args.streams, args.size)
    try:
        with tempfile.TemporaryDirectory() as folder:
            broker = None
            if args.mqtt:
                broker = Mosquitto(Path(folder))
                broker.start()
            port = free_port()
            config = RunConfig(
                input=tuple(f"{n}={server.url(n)}" for n in names),
                outputs=OutputConfig(jsonl=str(Path(folder) / "{stream}.jsonl")),
                captions=CaptionPolicy(min_interval=2.0),
                sources=SourceOptions(reconnect=RetryPolicy(initial=0.5, cap=2.0, jitter=0.25)),
                status_every=3600.0,
                serve=ServeConfig(port=port, token=TOKEN) if args.churn else None,
                mqtt=MqttConfig(broker.url()) if broker is not None else None,
            )  # fmt: skip
            stop = asyncio.Event()
            counter = _Counter()  # analysed frames: proof that the streams keep flowing
            task = asyncio.create_task(
                run_pipeline(config, encoder=encoder, stop=stop, observers=[counter])
            )
            state = _Soak(args, counter)
            try:
                await _run(state, task, server, names, port, out)
            finally:
                stop.set()
                summary = await task
                if broker is not None:
                    broker.stop()
            if state.tracing:
                _write_growth(tracemalloc.take_snapshot(), out)
                tracemalloc.stop()
    finally:
        server.kill()
    return state.samples, summary, state.mqtt


async def _run(state: _Soak, task: asyncio.Task, server, names, port: int, out: Path) -> None:
    """Restart the camera server now and then; sample (or churn, which samples) until the end."""
    args = state.args
    end = state.started + args.minutes * 60
    churning = None
    if args.churn:
        source = server.url(names[0])
        churning = asyncio.create_task(_churn(state, f"http://127.0.0.1:{port}", source, out, end))
    next_restart = state.started + args.restart_every if args.restart_every else float("inf")
    try:
        while time.monotonic() < end and not task.done():
            await asyncio.sleep(args.sample_every)
            if churning is not None and churning.done():
                churning.result()  # its error, if it failed
            now = time.monotonic()
            if now >= next_restart:
                server.kill()
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.start)
                state.restarts += 1
                next_restart = now + args.restart_every
            if churning is None:
                state.sample(out)
        if churning is not None:
            state.mqtt = await _mqtt_counts(f"http://127.0.0.1:{port}")
    finally:
        if churning is not None:
            churning.cancel()


async def _mqtt_counts(url: str) -> dict[str, float]:
    """The run's MQTT counters, read from the viewer's /metrics (empty without --mqtt)."""
    import aiohttp

    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as http, http.get(f"{url}/metrics") as answer:
        text = await answer.text()
    counts = {}
    for line in text.splitlines():
        if line.startswith("streamer_mqtt_"):
            name, _, value = line.rpartition(" ")
            counts[name.removeprefix("streamer_mqtt_")] = float(value)
    return counts


def _write_growth(snapshot: tracemalloc.Snapshot, out: Path) -> None:
    """The call sites holding the most memory allocated after the warm-up, with their stacks."""
    snapshot = snapshot.filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
    stats = snapshot.statistics("traceback")
    total = sum(s.size for s in stats)
    lines = [f"allocated after the warm-up and alive at the end: {total / 2**20:.2f} MiB", ""]
    for stat in stats[:25]:
        lines.append(f"{stat.size / 2**20:.3f} MiB in {stat.count} blocks")
        lines += [f"    {line}" for line in stat.traceback.format(limit=8)]
    (out / "tracemalloc.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:60]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--restart-every", type=float, default=45.0, help="seconds; 0: never")
    parser.add_argument(
        "--churn",
        type=float,
        default=0.0,
        help="add and remove a stream through the API every S seconds",
    )
    parser.add_argument("--mqtt", action="store_true", help="publish to a mosquitto started here")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds not judged")
    parser.add_argument("--encoder", default="clip:tiny")
    parser.add_argument("--out", default="soak-results", help="folder for CSV, JSON, PNG")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace Python/NumPy allocations; write the growth after warm-up",
    )
    parser.add_argument(
        "--trim", action="store_true", help="malloc_trim(0) before each RSS sample (glibc)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"soak: {args.streams} stream(s) {args.size}, {args.minutes:g} min, server restarted "
          f"every {args.restart_every:g} s, a stream added and removed through the API every "
          f"{args.churn:g} s, MQTT {'on' if args.mqtt else 'off'}; {machine}",
          flush=True)  # fmt: skip
    samples, summary, mqtt = asyncio.run(soak(args, out))
    with open(out / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(samples[0])) if samples else ["t"])
        writer.writeheader()
        writer.writerows(asdict(s) for s in samples)
    result = {
        "machine": machine,
        "args": vars(args),
        "frames_delivered": summary.frames,
        "restarts": samples[-1].restarts if samples else 0,
        "churns": samples[-1].churns if samples else 0,
        "mqtt": mqtt,
        "reconnects": sum(s.reconnects for s in summary.streams),
        "growth_after_warmup": growth(samples, args.warmup),
    }
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    title = f"streamer soak: {args.streams} streams, {args.minutes:g} min, {result['restarts']} " \
            f"server restarts ({machine})"  # fmt: skip
    plot(samples, args.warmup, out / "soak.png", title)
    print(json.dumps(result["growth_after_warmup"], indent=2))
    print(f"frames delivered {summary.frames}, reconnects {result['reconnects']}; wrote "
          f"{out / 'soak.csv'}, {out / 'soak.json'}, {out / 'soak.png'}")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
