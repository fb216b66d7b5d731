"""`/metrics`: the run's counters for Prometheus, through `prometheus_client`.

The numbers already live in the run's own counters, so nothing here counts: `RunCollector`
reads them when the registry is collected, at scrape time, and `prometheus_client` writes the
text exposition (version 0.0.4: every name here is a classic one). Each viewer has its own
`CollectorRegistry` (`metrics_registry`), never the library's global one, so two runs in one
process (tests, a notebook) do not mix, and the process collectors of the global registry are
not served.

Families (every per-stream one has a `stream` label, and a `node` one: the machine that runs it):

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
streamer_archive_up                         gauge      1 while the archive writes its index
streamer_archive_state                      gauge      1 for the index writer's state, else 0
streamer_archive_rows_total                 counter    moments written to the index
streamer_archive_rows_queued                gauge      moments waiting to be written
streamer_archive_rows_waiting               gauge      moments held for their caption
streamer_archive_rows_dropped_total         counter    moments dropped: the disk was too slow
streamer_archive_rows_lost_total            counter    moments not written: a write failed
streamer_archive_clips_total                counter    alert clips, by outcome (written, failed)
streamer_archive_clips_waiting              gauge      alert clips named, not yet cut
streamer_recording_bytes_total              counter    bytes recorded, per stream
streamer_recording_files_total              counter    segment files started, per stream
streamer_recording_dropped_packets_total    counter    packets the recorder dropped
streamer_recording_state                    gauge      1 for the recorder's state, else 0
streamer_mqtt_connected                     gauge      1 while connected to the MQTT broker
streamer_mqtt_published_total               counter    messages the broker took
streamer_mqtt_dropped_total                 counter    events dropped: the broker was away
streamer_mqtt_reconnects_total              counter    connections back after a loss
streamer_mqtt_queued                        gauge      messages waiting for the broker
==========================================  =========  =====================================

The archive's families come with `--archive`, read from the run's plain `archive.status()`
dict (`streamer.watch.web._status.archive_status`): this room never imports the archive. The
MQTT families come with `--mqtt`, read the same way from `run.mqtt.status()`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from streamer.sources.tap import TAP_STATES
from streamer.watch.web._status import STREAM_STATES, archive_status, mqtt_status, stream_state

__all__ = ["CONTENT_TYPE", "RunCollector", "metrics_registry", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""What `generate_latest` writes for classic names; every Prometheus version reads it."""

#: Bucket bounds of the encoder batch size histogram (images per call).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

WebNumbers = Mapping[str, Mapping[str, int]]
"""The viewer's own numbers: {"clients": {kind: n}, "disconnects": {reason: n}}."""

_STREAM_COUNTERS: tuple[tuple[str, str, Callable[[Any], float]], ...] = (
    ("streamer_frames_decoded", "Frames that reached the pipeline.", lambda s: s.stats.decoded),
    ("streamer_frames_analysed", "Frames the image encoder saw.", lambda s: s.stats.analysed),
    ("streamer_frames_delivered", "Frames drawn and written to the outputs.",
     lambda s: s.stats.delivered),
    ("streamer_frames_dropped", "Frames dropped to stay live (freshest wins).",
     lambda s: s.dropped),
    ("streamer_captions", "Captions shown.", lambda s: s.stats.captions),
    ("streamer_caption_timeouts", "File captions that did not come in time and were made from "
     "tags.", lambda s: s.stats.caption_timeouts),
    ("streamer_reconnects", "Reopen attempts of a live source.",
     lambda s: s.source.status.reconnects),
    ("streamer_damaged", "Packets that did not decode plus pictures decoded with errors (a live "
     "camera's packet loss, e.g. RTSP over UDP; a lower bound); for a file, packets that did "
     "not decode.", lambda s: s.source.status.damaged),
)  # fmt: skip
_LLM_COUNTERS = (
    ("requests", "Chat requests sent to the LLM server, every attempt."),
    ("captions", "Captions the LLM returned."),
    ("errors", "Caption calls that failed."),
    ("retries", "Attempts made after a retryable failure."),
    ("rejected", "Caption calls refused by the open circuit breaker (nothing sent)."),
    ("fallbacks", "Image requests resent as tags only after an image error."),
)
_LLM_STATES = ("ok", "slow", "down", "text-only", "error")
_ENCODER_COUNTERS = (
    ("batches", "streamer_encoder_batches", "Calls of the image encoder (batches)."),
    ("images", "streamer_encoder_images", "Images the encoder embedded."),
    ("busy_s", "streamer_encoder_busy_seconds", "Seconds spent inside the encoder."),
)


class RunCollector(Collector):
    """Reads a running pipeline's counters each time it is collected.

    Args:
        run: the live run an observer is given (`streamer.core.events`).
        web: returns the viewer's own numbers (`WebNumbers`) at collection time.
    """

    def __init__(self, run: Any, web: Callable[[], WebNumbers] = dict) -> None:
        self.run = run
        self.web = web

    def collect(self) -> Iterator[Metric]:
        run = self.run
        yield from _stream_families(run.streams)
        if run.client is not None:
            yield from _llm_families(run.client)
        yield from _encoder_families(encoder_counters(run))
        yield from _web_families(self.web())
        archive = archive_status(run)
        if archive is not None:
            yield from _archive_families(archive)
        mqtt = mqtt_status(run)
        if mqtt is not None:
            yield from _mqtt_families(mqtt)
        yield GaugeMetricFamily(
            "streamer_uptime_seconds",
            "Seconds since the run started.",
            value=round(time.monotonic() - run.started, 3),
        )


def metrics_registry(run: Any, web: Callable[[], WebNumbers] = dict) -> CollectorRegistry:
    """A registry of its own holding a `RunCollector` for `run`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(run, web))
    return registry


def render_metrics(run: Any, web: WebNumbers | None = None) -> str:
    """The exposition of `run` now, in Prometheus' text format (`CONTENT_TYPE`).

    Args:
        run: the live run an observer is given (`streamer.core.events`).
        web: the viewer's own numbers: {"clients": {kind: n}, "disconnects": {reason: n}}.
    """
    return generate_latest(metrics_registry(run, lambda: web or {})).decode()


def encoder_counters(run: Any) -> Any:
    """The encoder's counters (`batches`, `images`, `busy_s`, `batch_sizes`): the encoder
    service's load report, read at scrape time."""
    return run.encoder.load()


def histogram_buckets(histogram: Any) -> list[tuple[str, float]]:
    """A `streamer.core.stats.Histogram`'s cumulative buckets as `(le, count)`, +Inf last."""
    return [(_le(bound), count) for bound, count in histogram.cumulative()]


def counts_buckets(counts: Mapping[int, int], bounds: Sequence[float]) -> list[tuple[str, int]]:
    """Cumulative buckets from `{observed value: times}` (the encoder's batch sizes)."""
    return [
        (_le(bound), sum(times for value, times in counts.items() if value <= bound))
        for bound in (*bounds, math.inf)
    ]


def _le(bound: float) -> str:
    """A bucket's bound as its `le` label: 4 for a whole number, 0.1, +Inf."""
    if isinstance(bound, int):
        return str(bound)
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _stream_families(streams: Sequence[Any]) -> Iterator[Metric]:
    for name, help, read in _STREAM_COUNTERS:
        family = CounterMetricFamily(name, help, labels=["stream", "node"])
        for s in streams:
            family.add_metric([s.name, s.node or ""], read(s))
        yield family
    states = GaugeMetricFamily(
        "streamer_stream_state",
        "1 for the state the stream is in, 0 for the others.",
        labels=["stream", "node", "state"],
    )
    offline = GaugeMetricFamily(
        "streamer_stream_offline_since_seconds",
        "Unix time the stream went offline (only while it is offline).",
        labels=["stream", "node"],
    )
    latency = HistogramMetricFamily(
        "streamer_latency_seconds",
        "Seconds from a frame leaving the decoder to its delivery with the overlay.",
        labels=["stream", "node"],
    )
    for s in streams:
        now = stream_state(s)
        for state in STREAM_STATES:
            states.add_metric([s.name, s.node or "", state], int(state == now))
        if s.source.status.offline_since is not None:
            offline.add_metric([s.name, s.node or ""], s.source.status.offline_since)
        histogram = s.stats.latency.histogram
        latency.add_metric([s.name, s.node or ""], histogram_buckets(histogram), histogram.sum)
    yield from (states, offline, latency)


def _llm_families(client: Any) -> Iterator[Metric]:
    stats = client.stats
    for field, help in _LLM_COUNTERS:
        yield CounterMetricFamily(f"streamer_llm_{field}", help, value=getattr(stats, field, 0))
    latency = GaugeMetricFamily(
        "streamer_llm_last_latency_seconds",
        "Round trip of the last answered LLM request (absent before the first).",
        labels=[],
    )
    if getattr(stats, "last_latency_s", None) is not None:
        latency.add_metric([], stats.last_latency_s)
    yield latency
    now = getattr(getattr(client, "state", None), "value", None)
    states = GaugeMetricFamily(
        "streamer_llm_state", "1 for the LLM client's state, 0 for the others.", labels=["state"]
    )
    for state in _LLM_STATES:
        states.add_metric([state], int(state == now))
    yield states


def _encoder_families(stats: Any) -> Iterator[Metric]:
    for field, name, help in _ENCODER_COUNTERS:
        yield CounterMetricFamily(name, help, value=getattr(stats, field, 0))
    sizes = getattr(stats, "batch_sizes", None)
    if sizes is not None:
        sizes = dict(sizes)
        batch = HistogramMetricFamily("streamer_encoder_batch_size", "Images per encoder call.")
        total = float(sum(size * times for size, times in sizes.items()))
        batch.add_metric([], counts_buckets(sizes, BATCH_BUCKETS), total)
        yield batch


def _web_families(web: WebNumbers) -> Iterator[Metric]:
    clients = GaugeMetricFamily(
        "streamer_web_clients",
        "Open streaming clients of the web viewer, by kind.",
        labels=["kind"],
    )
    for kind, n in sorted(web.get("clients", {}).items()):
        clients.add_metric([kind], n)
    yield clients
    disconnects = CounterMetricFamily(
        "streamer_web_disconnects",
        "Clients the web viewer disconnected (stalled: stopped reading; overflow: too far "
        "behind; full: too many clients).",
        labels=["reason"],
    )
    for reason, n in sorted(web.get("disconnects", {}).items()):
        disconnects.add_metric([reason], n)
    yield disconnects


_ARCHIVE_STATES = ("starting", "ok", "failed", "closed")
_ROW_COUNTERS = (
    ("written", "streamer_archive_rows", "Moments written to the archive's index."),
    ("dropped", "streamer_archive_rows_dropped", "Moments dropped because the disk was too slow "
     "(the writer's queue was full)."),
    ("lost", "streamer_archive_rows_lost", "Moments not written because a write failed (e.g. "
     "the disk is full)."),
)  # fmt: skip
_RECORDING_COUNTERS = (
    ("bytes", "streamer_recording_bytes", "Bytes of a live stream recorded into the archive."),
    ("files", "streamer_recording_files", "Recording segments started."),
    ("dropped", "streamer_recording_dropped_packets", "Packets the recorder dropped (the disk "
     "fell behind or failed)."),
)  # fmt: skip


def _archive_families(status: Mapping[str, Any]) -> Iterator[Metric]:
    """The archive's state from its plain `status()` dict (see the module's table)."""
    state = status["state"]
    yield GaugeMetricFamily(
        "streamer_archive_up",
        "1 while the archive writes its index, 0 once it stopped (a write failed) or closed.",
        value=int(state == "ok"),
    )
    states = GaugeMetricFamily(
        "streamer_archive_state",
        "1 for the state of the archive's index writer, 0 for the others.",
        labels=["state"],
    )
    for name in _ARCHIVE_STATES:
        states.add_metric([name], int(name == state))
    yield states
    moments = status["moments"]
    for key, name, help in _ROW_COUNTERS:
        yield CounterMetricFamily(name, help, value=moments[key])
    yield GaugeMetricFamily(
        "streamer_archive_rows_queued", "Moments waiting to be written.", value=moments["queued"]
    )
    yield GaugeMetricFamily(
        "streamer_archive_rows_waiting",
        "Moments picked and held for their stream's caption, not yet queued to be written.",
        value=moments.get("waiting", 0),
    )
    clips = CounterMetricFamily(
        "streamer_archive_clips",
        "Alert clips written, or given up on (nothing recorded of their span, a write error).",
        labels=["outcome"],
    )
    for outcome in ("written", "failed"):
        clips.add_metric([outcome], status["clips"][outcome])
    yield clips
    yield GaugeMetricFamily(
        "streamer_archive_clips_waiting",
        "Alert clips named, not yet cut.",
        value=status["clips"]["waiting"],
    )
    yield from _recording_families(status["recordings"])


def _recording_families(recordings: Mapping[str, Any]) -> Iterator[Metric]:
    for key, name, help in _RECORDING_COUNTERS:
        family = CounterMetricFamily(name, help, labels=["stream"])
        for stream, rec in sorted(recordings.items()):
            family.add_metric([stream], rec[key])
        yield family
    states = GaugeMetricFamily(
        "streamer_recording_state",
        "1 for the state of a stream's recorder, 0 for the others.",
        labels=["stream", "state"],
    )
    for stream, rec in sorted(recordings.items()):
        for name in TAP_STATES:
            states.add_metric([stream, name], int(name == rec["state"]))
    yield states


_MQTT_FAMILIES = (
    ("connected", "streamer_mqtt_connected", GaugeMetricFamily,
     "1 while connected to the MQTT broker, 0 while it is away."),
    ("published", "streamer_mqtt_published", CounterMetricFamily,
     "MQTT messages the broker took."),
    ("dropped", "streamer_mqtt_dropped", CounterMetricFamily,
     "MQTT events dropped, oldest first, from a full queue while the broker was away or slow."),
    ("reconnects", "streamer_mqtt_reconnects", CounterMetricFamily,
     "Times the connection to the MQTT broker came back after it was lost."),
    ("queued", "streamer_mqtt_queued", GaugeMetricFamily, "MQTT messages waiting to be sent."),
)  # fmt: skip


def _mqtt_families(status: Mapping[str, Any]) -> Iterator[Metric]:
    """The MQTT publisher's connection and counters from its plain `status()` dict."""
    for key, name, family, help in _MQTT_FAMILIES:
        yield family(name, help, value=int(status[key]))
