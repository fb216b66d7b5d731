"""Per-stream statistics: rates, drops, latency percentiles, and the console status table."""

from __future__ import annotations

import bisect
import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamer.errors import ConfigError

#: Upper bounds (seconds) of the latency histogram's buckets: a frame on time is tens of
#: milliseconds late, one held up by a stall is seconds late.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts of observations per bucket over the whole run (for `/metrics`).

    Unlike `LatencyTracker`'s window, a histogram never forgets: a scraper takes differences
    between its readings, so the counts must only grow.

    Args:
        bounds: increasing upper bounds of the buckets; a last, unbounded bucket is implied.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ConfigError(f"histogram bounds must be increasing, got {list(bounds)}")
        self.bounds: tuple[float, ...] = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """`(upper bound, observations ≤ it)` per bucket, the last bound being +inf."""
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self._counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class LatencyTracker:
    """Keeps the most recent latencies (seconds) and answers percentiles over them; every
    latency also goes into `histogram`, which keeps counts for the whole run.

    Args:
        window: how many recent samples to keep (a sliding window, so a long run reports its
            present, not its first minute).
    """

    def __init__(self, window: int = 4096) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self.histogram = Histogram(LATENCY_BUCKETS)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.histogram.observe(seconds)

    def __len__(self) -> int:
        return len(self._samples)

    def percentiles(self, *qs: float) -> tuple[float, ...]:
        """The `qs` percentiles (0..100) in seconds; NaN each when there are no samples."""
        if not self._samples:
            return tuple(float("nan") for _ in qs)
        values = np.percentile(np.fromiter(self._samples, dtype=np.float64), qs)
        return tuple(float(v) for v in values)


@dataclass
class StreamStats:
    """Counters of one stream, updated on the event loop thread.

    Attributes:
        decoded: frames that reached the pipeline from the source.
        analysed: frames the encoder saw.
        delivered: frames written to the outputs with their overlay.
        captions: captions made.
        alerts: text-query alerts fired.
        latency: capture → delivered, seconds (live streams).
    """

    decoded: int = 0
    analysed: int = 0
    delivered: int = 0
    captions: int = 0
    caption_timeouts: int = 0
    alerts: int = 0
    latency: LatencyTracker = field(default_factory=LatencyTracker)


@dataclass
class RateMeter:
    """Frames per second of a counter between two readings."""

    last_count: int = 0
    last_time: float = field(default_factory=time.monotonic)

    def rate(self, count: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        elapsed = now - self.last_time
        rate = (count - self.last_count) / elapsed if elapsed > 0 else 0.0
        self.last_count, self.last_time = count, now
        return rate


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One line of the status table.

    `damaged`: packets that did not decode plus pictures decoded with errors (a live
    camera's packet loss), over the run; see `SourceStatus.damaged`.
    """

    name: str
    state: str
    in_fps: float
    analysed_fps: float
    out_fps: float
    dropped: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    reconnects: int
    damaged: int = 0


NAME_MAX = 40  # a longer stream name shows its start and end around "…"


def status_table(rows: list[StreamRow]) -> str:
    """A compact fixed-width table for the console; the stream column as wide as its longest
    name (up to `NAME_MAX`), so names that differ only at their end stay apart."""
    width = min(max([19, *(len(r.name) for r in rows)]), NAME_MAX)
    head = (f"{'stream':<{width + 1}}{'state':<11}{'in/s':>7}{'ana/s':>7}{'out/s':>7}"
            f"{'drops':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'recon':>6}"
            f"{'damaged':>8}")  # fmt: skip
    lines = [head]
    for r in rows:
        lines.append(
            f"{_shortened(r.name, width):<{width + 1}}{r.state[:10]:<11}{r.in_fps:>7.1f}"
            f"{r.analysed_fps:>7.1f}{r.out_fps:>7.1f}{r.dropped:>7d}{_ms(r.p50_ms)}"
            f"{_ms(r.p95_ms)}{_ms(r.p99_ms)}{r.reconnects:>6d}{r.damaged:>8d}"
        )
    return "\n".join(lines)


def _shortened(name: str, width: int) -> str:
    """`name` in `width` characters: its start and end around "…" when longer.

    >>> _shortened("127.0.0.1_23466_hls_index.m3u8", 20)
    '127.0.0.1_…ndex.m3u8'
    """
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[: width - 1 - tail] + "…" + name[-tail:]


def _ms(value: float) -> str:
    return f"{'-':>8}" if value != value else f"{value:>8.0f}"
