"""What the viewer says about a run: plain, JSON-ready dicts read from the run's own counters.

Everything here runs on the event loop, where the counters are updated, so the numbers of one
snapshot belong together.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Iterable
from typing import Any

from streamer.core.frame import Caption

#: Every state a stream can be in: its source's (`SourceStatus.state`): a live source's, or
#: "playing" then "ended" for a file; on a cluster, "queued" for a file no shard has taken yet.
STREAM_STATES = ("connecting", "online", "offline", "playing", "ended", "failed", "queued")


def stream_state(stream: Any) -> str:
    """The stream's state, one of `STREAM_STATES`."""
    return stream.source.status.state


TROUBLED_STATES = ("offline", "failed")  # a camera down now, or given up on


def health(states: Iterable[str]) -> dict[str, Any]:
    """`/healthz`: "ok", or "degraded" while a stream is offline or has failed, with how many
    streams are in each state (no names: the route is open without the token).

    >>> health(["online", "offline", "online"])
    {'status': 'degraded', 'streams': 3, 'states': {'offline': 1, 'online': 2}}
    """
    counts = collections.Counter(states)
    troubled = any(counts[s] for s in TROUBLED_STATES)
    return {"status": "degraded" if troubled else "ok", "streams": sum(counts.values()),
            "states": dict(sorted(counts.items()))}  # fmt: skip


def caption_record(caption: Caption, ident: int, wall: float) -> dict[str, Any]:
    """A caption as the page and `/api/captions` show it; `id` orders captions of the run."""
    return {
        "id": ident,
        "stream": caption.stream,
        "text": caption.text,
        "source": caption.source,
        "pts": round(caption.pts, 3),
        "frame": caption.frame_index,
        "wall": round(wall, 3),
    }


class Rates:
    """Frames per second of each stream over the last few seconds, from periodic readings.

    Readings come from one timer, not from requests, so the rates do not depend on how many
    clients ask or how often.

    Args:
        window: seconds the rates are averaged over.
    """

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self._readings: dict[str, collections.deque] = {}

    def read(self, streams: list[Any], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for s in streams:
            readings = self._readings.setdefault(s.name, collections.deque())
            readings.append((now, s.stats.decoded, s.stats.analysed, s.stats.delivered))
            while len(readings) > 2 and now - readings[1][0] >= self.window:
                readings.popleft()

    def forget(self, name: str) -> None:
        """Drop a removed stream's readings (one added under its name starts afresh)."""
        self._readings.pop(name, None)

    def of(self, name: str) -> dict[str, float]:
        """`{"in", "analysed", "out"}` frames per second (0 before two readings)."""
        readings = self._readings.get(name)
        if not readings or len(readings) < 2:
            return {"in": 0.0, "analysed": 0.0, "out": 0.0}
        (t0, *first), (t1, *last) = readings[0], readings[-1]
        span = t1 - t0
        rates = [(b - a) / span if span > 0 else 0.0 for a, b in zip(first, last, strict=True)]
        return {
            key: round(rate, 2) for key, rate in zip(("in", "analysed", "out"), rates, strict=True)
        }


def _ms(seconds: float) -> float | None:
    return _finite(seconds * 1000, 1)


def _finite(value: float | None, digits: int) -> float | None:
    """`value` rounded, or None where JSON has no number for it (NaN, infinity)."""
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def stream_status(stream: Any, rates: Rates) -> dict[str, Any]:
    """One stream: state, rates, latency, counters, caption and tags."""
    status = stream.source.status
    p50, p95, p99 = stream.stats.latency.percentiles(50, 95, 99)
    latest = stream.latest.annotation if stream.latest is not None else None
    caption = stream.caption
    return {
        "name": stream.name,
        "live": stream.live,
        "node": stream.node,
        "state": stream_state(stream),
        "fps": rates.of(stream.name),
        "latency_ms": {"p50": _ms(p50), "p95": _ms(p95), "p99": _ms(p99)},
        "frames": {
            "decoded": stream.stats.decoded,
            "analysed": stream.stats.analysed,
            "delivered": stream.stats.delivered,
            "dropped": stream.dropped,
        },
        "captions": stream.stats.captions,
        "reconnects": status.reconnects,
        # Packets that did not decode plus pictures decoded with errors: a camera's packet loss.
        "damaged": status.damaged,
        "offline_since": status.offline_since,
        "last_error": status.last_error,
        "caption": None
        if caption is None
        else {
            "text": caption.text,
            "source": caption.source,
            "pts": round(caption.pts, 3),
        },
        "tags": []
        if latest is None
        else [{"label": t.label, "score": _finite(t.score, 4)} for t in latest.tags],
        "scene_score": None if latest is None else _finite(latest.scene_score, 4),
    }


def llm_status(client: Any) -> dict[str, Any] | None:
    """The LLM client's state and counters, None when captions come from tags."""
    if client is None:
        return None
    stats = client.stats
    state = getattr(client, "state", None)
    return {
        "state": getattr(state, "value", None),
        "detail": client.state_detail,
        "requests": stats.requests,
        "captions": stats.captions,
        "errors": stats.errors,
        "last_latency_s": _finite(stats.last_latency_s, 3),
    }


def archive_status(run: Any) -> dict[str, Any] | None:
    """The archive's state with `--archive` (a plain dict: `state`, `error`, `moments`,
    `recordings` by stream, `clips`; see `ArchiveObserver.status`), None without one. The run
    carries it (`run.archive`), so the viewer never imports the archive."""
    archive = getattr(run, "archive", None)
    return archive.status() if archive is not None else None


def mqtt_status(run: Any) -> dict[str, Any] | None:
    """The MQTT publisher's connection and counters with `--mqtt` (a plain dict: `broker`,
    `connected`, `published`, `dropped`, `reconnects`, `queued`), None without."""
    mqtt = getattr(run, "mqtt", None)
    return mqtt.status() if mqtt is not None else None


def run_status(run: Any, rates: Rates, clients: dict[str, int]) -> dict[str, Any]:
    """The whole run, as `/api/status` and the page's status events show it."""
    model, load = run.encoder.model, run.encoder.load()  # the encoder service's
    return {
        "uptime_s": round(time.monotonic() - run.started, 1),
        "encoder": {
            "model": f"{model.kind} {model.name}",
            "random_weights": model.random_weights,
            "batches": load.batches,
            "images": load.images,
            "busy_s": round(load.busy_s, 3),
        },
        "llm": llm_status(run.client),
        "archive": archive_status(run),
        "mqtt": mqtt_status(run),
        "clients": dict(clients),
        "streams": [stream_status(stream, rates) for stream in run.streams],
    }
