"""Per-stream statistics: rates, drops, latency percentiles, and the console status table."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np


class LatencyTracker:
    """Keeps the most recent latencies (seconds) and answers percentiles over them.

    Args:
        window: how many recent samples to keep (a sliding window, so a long run reports its
            present, not its first minute).
    """

    def __init__(self, window: int = 4096) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

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
        latency: capture → delivered, seconds (live streams).
    """

    decoded: int = 0
    analysed: int = 0
    delivered: int = 0
    captions: int = 0
    caption_timeouts: int = 0
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
    """One line of the status table."""

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


def status_table(rows: list[StreamRow]) -> str:
    """A compact fixed-width table for the console."""
    head = f"{'stream':<20}{'state':<11}{'in/s':>7}{'ana/s':>7}{'out/s':>7}{'drops':>7}" \
           f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'recon':>6}"  # fmt: skip
    lines = [head]
    for r in rows:
        lines.append(
            f"{r.name[:19]:<20}{r.state[:10]:<11}{r.in_fps:>7.1f}{r.analysed_fps:>7.1f}"
            f"{r.out_fps:>7.1f}{r.dropped:>7d}{_ms(r.p50_ms)}{_ms(r.p95_ms)}{_ms(r.p99_ms)}"
            f"{r.reconnects:>6d}"
        )
    return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{'-':>8}" if value != value else f"{value:>8.0f}"
