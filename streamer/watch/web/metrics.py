"""`/metrics`: the run's counters in Prometheus' text exposition format (version 0.0.4).

Written by hand rather than with `prometheus_client`: the format is small, the values already
live in the run's own counters (read at scrape time, nothing is counted twice), and the runtime
keeps one dependency fewer. The tests parse the output with `prometheus_client`'s parser.

Families (every per-stream one has a `stream` label):

==========================================  =========  =====================================
name                                        type       what
==========================================  =========  =====================================
streamer_frames_decoded_total               counter    frames that reached the pipeline
streamer_frames_analysed_total              counter    frames the encoder saw
streamer_frames_delivered_total             counter    frames drawn and written
streamer_frames_dropped_total               counter    frames dropped (live streams)
streamer_captions_total                     counter    captions shown
streamer_caption_timeouts_total             counter    file captions that fell back to tags
streamer_reconnects_total                   counter    reopen attempts of a live source
streamer_damaged_total                      counter    packets not decoded + pictures with errors
streamer_stream_state                       gauge      1 for the stream's state, else 0
streamer_stream_offline_since_seconds       gauge      Unix time it went offline (offline only)
streamer_latency_seconds                    histogram  capture → delivered
streamer_llm_requests_total, ..._errors...  counter    LLM client counters (with an LLM)
streamer_llm_last_latency_seconds           gauge      round trip of the last answer
streamer_llm_state                          gauge      1 for the client's state, else 0
streamer_encoder_batches_total              counter    encoder calls
streamer_encoder_images_total               counter    images encoded
streamer_encoder_busy_seconds_total         counter    time inside the encoder
streamer_encoder_batch_size                 histogram  images per encoder call
streamer_web_clients                        gauge      open MJPEG / event-stream clients
streamer_web_disconnects_total              counter    clients dropped by the viewer, by reason
streamer_uptime_seconds                     gauge      seconds since the run started
==========================================  =========  =====================================
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamer.sources.status import damaged_count
from streamer.watch.web._status import STREAM_STATES, stream_state

__all__ = ["CONTENT_TYPE", "Exposition", "HistogramValue", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Bucket bounds of the encoder batch size histogram (images per call).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_LLM_COUNTERS = (
    ("requests", "Chat requests sent to the LLM server, every attempt."),
    ("captions", "Captions the LLM returned."),
    ("errors", "Caption calls that failed."),
    ("retries", "Attempts made after a retryable failure."),
    ("rejected", "Caption calls refused by the open circuit breaker (nothing sent)."),
    ("fallbacks", "Image requests resent as tags only after an image error."),
)
_LLM_STATES = ("ok", "slow", "down", "text-only", "error")

Labels = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class HistogramValue:
    """One histogram series: `(upper bound, cumulative count)` per bucket, +inf last."""

    buckets: Sequence[tuple[float, int]]
    sum: float
    count: int


class Exposition:
    """Builds one exposition: each family's `# HELP` and `# TYPE` once, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._families: set[str] = set()

    def counter(self, name: str, help: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """A counter family; `name` ends in `_total`."""
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total, got {name!r}")
        self._family(name, "counter", help)
        for labels, value in samples:
            self._sample(name, labels, value)

    def gauge(self, name: str, help: str, samples: Iterable[tuple[Labels, float]]) -> None:
        self._family(name, "gauge", help)
        for labels, value in samples:
            self._sample(name, labels, value)

    def histogram(
        self, name: str, help: str, samples: Iterable[tuple[Labels, HistogramValue]]
    ) -> None:
        """A histogram family: `_bucket{le=…}` per bucket (cumulative), `_sum` and `_count`."""
        self._family(name, "histogram", help)
        for labels, value in samples:
            for bound, count in value.buckets:
                self._sample(f"{name}_bucket", {**labels, "le": _number(bound)}, count)
            self._sample(f"{name}_sum", labels, value.sum)
            self._sample(f"{name}_count", labels, value.count)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"

    def _family(self, name: str, kind: str, help: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"not a Prometheus metric name: {name!r}")
        if name in self._families:
            raise ValueError(f"metric family {name!r} written twice")
        self._families.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def _sample(self, name: str, labels: Labels, value: float) -> None:
        if labels:
            for key in labels:
                if not _LABEL.match(key):
                    raise ValueError(f"not a Prometheus label name: {key!r}")
            inner = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            self._lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self._lines.append(f"{name} {_number(value)}")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def histogram_value(histogram: Any) -> HistogramValue:
    """A `streamer.core.stats.Histogram` as one series."""
    return HistogramValue(histogram.cumulative(), histogram.sum, histogram.count)


def counts_histogram(counts: Mapping[int, int], bounds: Sequence[float]) -> HistogramValue:
    """A histogram from `{observed value: times}` (the encoder's batch sizes)."""
    buckets, total = [], 0
    items = sorted(counts.items())
    for bound in (*bounds, math.inf):
        total = sum(times for value, times in items if value <= bound)
        buckets.append((bound, total))
    return HistogramValue(buckets, float(sum(v * n for v, n in items)), total)


def render_metrics(run: Any, web: Mapping[str, Mapping[str, int]] | None = None) -> str:
    """The exposition for a running pipeline.

    Args:
        run: the live run an observer is given (`streamer.core.events`).
        web: the viewer's own numbers: {"clients": {kind: n}, "disconnects": {reason: n}}.
    """
    out = Exposition()
    _stream_families(out, run.streams)
    if run.client is not None:
        _llm_families(out, run.client)
    _encoder_families(out, run.encoder.load())
    web = web or {}
    out.gauge(
        "streamer_web_clients",
        "Open streaming clients of the web viewer, by kind.",
        [({"kind": k}, n) for k, n in sorted(web.get("clients", {}).items())],
    )
    out.counter(
        "streamer_web_disconnects_total",
        "Clients the web viewer disconnected (stalled: stopped reading; overflow: too far "
        "behind; full: too many clients).",
        [({"reason": k}, n) for k, n in sorted(web.get("disconnects", {}).items())],
    )
    out.gauge(
        "streamer_uptime_seconds",
        "Seconds since the run started.",
        [({}, round(time.monotonic() - run.started, 3))],
    )
    return out.text()


def _stream_families(out: Exposition, streams: Sequence[Any]) -> None:
    def each(read) -> list[tuple[Labels, float]]:
        return [({"stream": s.name}, read(s)) for s in streams]

    def status(s, field: str, default: Any = 0) -> Any:
        value = getattr(getattr(s.source, "status", None), field, default)
        return default if value is None else value

    out.counter(
        "streamer_frames_decoded_total",
        "Frames that reached the pipeline.",
        each(lambda s: s.stats.decoded),
    )
    out.counter(
        "streamer_frames_analysed_total",
        "Frames the image encoder saw.",
        each(lambda s: s.stats.analysed),
    )
    out.counter(
        "streamer_frames_delivered_total",
        "Frames drawn and written to the outputs.",
        each(lambda s: s.stats.delivered),
    )
    out.counter(
        "streamer_frames_dropped_total",
        "Frames dropped to stay live (freshest wins).",
        each(lambda s: s.dropped),
    )
    out.counter("streamer_captions_total", "Captions shown.", each(lambda s: s.stats.captions))
    out.counter(
        "streamer_caption_timeouts_total",
        "File captions that did not come in time and were made from tags.",
        each(lambda s: s.stats.caption_timeouts),
    )
    out.counter(
        "streamer_reconnects_total",
        "Reopen attempts of a live source.",
        each(lambda s: status(s, "reconnects")),
    )
    out.counter(
        "streamer_damaged_total",
        "Packets that did not decode plus pictures decoded with errors (a live camera's packet "
        "loss, e.g. RTSP over UDP; a lower bound); for a file, packets that did not decode.",
        each(lambda s: damaged_count(s.source)),
    )
    out.gauge(
        "streamer_stream_state",
        "1 for the state the stream is in, 0 for the others.",
        [
            ({"stream": s.name, "state": state}, int(stream_state(s) == state))
            for s in streams
            for state in STREAM_STATES
        ],
    )
    out.gauge(
        "streamer_stream_offline_since_seconds",
        "Unix time the stream went offline (only while it is offline).",
        [
            ({"stream": s.name}, status(s, "offline_since"))
            for s in streams
            if status(s, "offline_since", None) is not None
        ],
    )
    out.histogram(
        "streamer_latency_seconds",
        "Seconds from a frame leaving the decoder to its delivery with the overlay.",
        [({"stream": s.name}, histogram_value(s.stats.latency.histogram)) for s in streams],
    )


def _llm_families(out: Exposition, client: Any) -> None:
    stats = client.stats
    for field, help in _LLM_COUNTERS:
        out.counter(f"streamer_llm_{field}_total", help, [({}, getattr(stats, field, 0))])
    latency = getattr(stats, "last_latency_s", None)
    out.gauge(
        "streamer_llm_last_latency_seconds",
        "Round trip of the last answered LLM request (absent before the first).",
        [({}, latency)] if latency is not None else [],
    )
    state = getattr(getattr(client, "state", None), "value", None)
    out.gauge(
        "streamer_llm_state",
        "1 for the LLM client's state, 0 for the others.",
        [({"state": s}, int(s == state)) for s in _LLM_STATES],
    )


def _encoder_families(out: Exposition, worker: Any) -> None:
    stats = getattr(worker, "stats", worker)  # counters on the worker or on its `stats`
    out.counter(
        "streamer_encoder_batches_total",
        "Calls of the image encoder (batches).",
        [({}, getattr(stats, "batches", 0))],
    )
    out.counter(
        "streamer_encoder_images_total",
        "Images the encoder embedded.",
        [({}, getattr(stats, "images", 0))],
    )
    out.counter(
        "streamer_encoder_busy_seconds_total",
        "Seconds spent inside the encoder.",
        [({}, float(getattr(stats, "busy_s", 0.0)))],
    )
    sizes = getattr(stats, "batch_sizes", None)
    if sizes is not None:
        out.histogram(
            "streamer_encoder_batch_size",
            "Images per encoder call.",
            [({}, counts_histogram(dict(sizes), BATCH_BUCKETS))],
        )
