"""A stream's status message: when one is due, and what it says.

A status goes out every `every_s` seconds, and at once when the stream's state changes
(online → offline), so Home Assistant sees a camera drop within a second without a message a
second in between. Frame rates are the counters' differences since the previous status.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamer.core.redact import redact

__all__ = ["StatusBoard", "stream_status"]


@dataclass(frozen=True, slots=True)
class _Sent:
    at: float
    state: str
    counts: tuple[int, int, int]  # decoded, analysed, delivered


def _counts(stream: Any) -> tuple[int, int, int]:
    stats = stream.stats
    return (stats.decoded, stats.analysed, stats.delivered)


def _ms(seconds: float) -> float | None:
    return round(seconds * 1000, 1) if math.isfinite(seconds) else None


def stream_status(stream: Any, fps: dict[str, float]) -> dict[str, Any]:
    """One stream's status message (state, frame rates, latency, counters), JSON-ready."""
    status = stream.source.status
    p50, p95 = stream.stats.latency.percentiles(50, 95)
    return {
        "stream": stream.name,
        "state": status.state,
        "live": stream.live,
        "fps": fps,
        "latency_ms": {"p50": _ms(p50), "p95": _ms(p95)},
        "frames": {
            "decoded": stream.stats.decoded,
            "analysed": stream.stats.analysed,
            "delivered": stream.stats.delivered,
            "dropped": stream.dropped,
        },
        "captions": stream.stats.captions,
        "reconnects": status.reconnects,
        "damaged": status.damaged,
        "offline_since": status.offline_since,
        "error": redact(status.last_error) if status.last_error else None,
        "wall": round(time.time(), 3),
    }


class StatusBoard:
    """Which streams' statuses are due, and their messages.

    Args:
        every_s: seconds between two statuses of a stream whose state did not change.
        clock: monotonic seconds.
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._sent: dict[str, _Sent] = {}

    def due(self, streams: Sequence[Any], final: bool = False) -> list[tuple[str, dict]]:
        """`(stream, message)` for each of `streams` whose status is due now (all: `final`)."""
        now, out = self._clock(), []
        for stream in streams:
            state, counts = stream.source.status.state, _counts(stream)
            sent = self._sent.get(stream.name)
            if not (final or sent is None or sent.state != state
                    or now - sent.at >= self.every_s):  # fmt: skip
                continue
            fps = {"in": 0.0, "analysed": 0.0, "out": 0.0}
            if sent is not None and now > sent.at:
                span = now - sent.at
                rates = [(b - a) / span for a, b in zip(sent.counts, counts, strict=True)]
                fps = dict(zip(fps, (round(r, 2) for r in rates), strict=True))
            self._sent[stream.name] = _Sent(now, state, counts)
            out.append((stream.name, stream_status(stream, fps)))
        return out

    def forget(self, stream: str) -> None:
        """A removed stream: a stream of its name later starts afresh."""
        self._sent.pop(stream, None)
