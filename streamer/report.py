"""What a run reports: progress while it runs, and its summary when it ends.

Progress goes to stderr: a bar while every stream is a file, else a status table every
`--status-every` seconds (per stream: state, input / analysed / output fps, drops, latency
percentiles, reconnects, damaged), and under it a line for each live stream whose analysis
falls well short of its rate, and, with `--archive`, a line on the archive (whether it writes,
its moments, recordings and alert clips). The summary (`RunSummary`, one
`StreamSummary` per stream) is what `run_pipeline` returns and what the CLI prints and turns
into an exit code.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamer.core.progress import Counters, ProgressBar
from streamer.core.stats import RateMeter, StreamRow, status_table
from streamer.sources.status import DELIVERING_STATES
from streamer.stream import StreamRun

log = logging.getLogger("streamer")

__all__ = [
    "Reporter",
    "RunSummary",
    "StreamSummary",
    "archive_line",
    "mqtt_line",
    "run_summary",
    "stopped_before_start",
    "stream_summary",
]


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """How one stream ended.

    Attributes:
        name: stream name.
        frames: frames delivered to the outputs.
        analysed: frames the encoder saw.
        captions: captions made.
        dropped: frames dropped (live streams only).
        latency_ms: capture → delivered, (p50, p95, p99) in milliseconds.
        reconnects: times a live source reconnected.
        state: the source's last state ("ended", "failed", ...).
        error: why the stream failed or ended early, None when it did not.
        damaged_packets: packets that did not decode and were skipped (the frames around
            them were annotated).
        damaged: what the stream counted as damaged: for a live source, packets that did not
            decode plus pictures decoded with errors, over all connections (packet loss on
            the way from the camera; `SourceStatus.damaged`); for a file, `damaged_packets`.
    """

    name: str
    frames: int
    analysed: int
    captions: int
    dropped: int
    latency_ms: tuple[float, float, float]
    reconnects: int
    state: str
    error: str | None
    damaged_packets: int = 0
    damaged: int = 0


@dataclass(frozen=True, slots=True)
class RunSummary:
    """How a run ended.

    Attributes:
        frames, analysed, captions: totals over every stream.
        wall_s: seconds from the start of the first stream to outputs closed.
        interrupted: stopped before the inputs ended.
        incomplete: why an input ended early (truncated, damaged, failed), None when none did.
        random_weights: the encoder ran with untrained weights.
        loop_lag_max_s: the longest the event loop was seen blocked.
        streams: per-stream summaries.
    """

    frames: int
    analysed: int
    captions: int
    wall_s: float
    interrupted: bool
    incomplete: str | None
    random_weights: bool
    loop_lag_max_s: float
    streams: tuple[StreamSummary, ...] = ()

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def run_summary(
    streams: Sequence[StreamRun], wall_s: float, *, stopped: bool, random_weights: bool,
    loop_lag_max_s: float,
) -> RunSummary:  # fmt: skip
    """The summary of a run over `streams` that took `wall_s` seconds.

    Args:
        streams: the run's streams, ended.
        wall_s: seconds from the start of the first stream to the outputs closed.
        stopped: the run was told to stop; it counts as interrupted unless every source got to
            its own end first.
        random_weights: the encoder ran with untrained weights.
        loop_lag_max_s: the longest the event loop was seen blocked.
    """
    summaries = tuple(stream_summary(stream) for stream in streams)
    problems = [f"{s.name}: {s.error}" for s in summaries if s.error]
    ended = all(stream.source.status.finished for stream in streams)
    return RunSummary(
        frames=sum(s.frames for s in summaries), analysed=sum(s.analysed for s in summaries),
        captions=sum(s.captions for s in summaries), wall_s=wall_s,
        interrupted=stopped and not ended, incomplete="; ".join(problems) or None,
        random_weights=random_weights, loop_lag_max_s=loop_lag_max_s, streams=summaries,
    )  # fmt: skip


def stopped_before_start(wall_s: float) -> RunSummary:
    """The summary of a run stopped before its model was ready: nothing was begun."""
    return RunSummary(frames=0, analysed=0, captions=0, wall_s=wall_s, interrupted=True,
                      incomplete=None, random_weights=False, loop_lag_max_s=0.0)  # fmt: skip


def stream_summary(stream: StreamRun) -> StreamSummary:
    """How one stream ended."""
    source = stream.source
    status = source.status
    error = str(source.incomplete) if source.incomplete else None
    if status.state == "failed":
        error = status.last_error or "failed"
    p50, p95, p99 = stream.stats.latency.percentiles(50, 95, 99)
    return StreamSummary(
        name=stream.name, frames=stream.stats.delivered, analysed=stream.stats.analysed,
        captions=stream.stats.captions, dropped=stream.dropped,
        latency_ms=(p50 * 1000, p95 * 1000, p99 * 1000), reconnects=status.reconnects,
        # A file's summary says "ended" however it ended: `error` tells the rest.
        state=status.state if source.connects else "ended", error=error,
        damaged_packets=0 if source.connects else status.damaged, damaged=status.damaged,
    )  # fmt: skip


class Reporter:
    """Progress on stderr: a bar while every stream is a file, else a status table.

    Args:
        streams: the run's streams.
        status_every: seconds between status tables.
        archive: with `--archive`, what tells the archive's state (`status()`: a plain dict,
            see `streamer.archive.observer.ArchiveObserver.status`); shown under the table.
        mqtt: with `--mqtt`, the publisher (`status()`: a plain dict, see
            `streamer.watch.mqtt.MqttPublisher.status`); a line under the table too.
        notes: lines the run keeps to show under the table, read at each table (the last
            reload's changes: `streamer.reload`).
    """

    def __init__(
        self, streams: Sequence[StreamRun], status_every: float, archive: Any = None,
        mqtt: Any = None, notes: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.streams = streams
        self.archive = archive
        self.mqtt = mqtt
        self.notes = notes if notes is not None else {}
        self.status_every = status_every
        self.files = all(not s.live for s in streams)
        self.counters = Counters()
        self.bar = ProgressBar(self.counters) if self.files else None
        self.meters: dict[str, tuple[StreamRun, RateMeter, RateMeter, RateMeter]] = {}
        self._meter_new_streams()
        self.last_table = time.monotonic()
        self.short: dict[str, int] = {}  # tables in a row each stream's analysis fell short

    def tick(self, final: bool = False) -> None:
        """Update the bar, or print the table when it is due (always when `final`)."""
        streams = self.streams
        self._meter_new_streams()
        if self.bar is not None:
            # read each time: a file whose first seconds do not decode lowers its count
            expected = [s.expected for s in streams]
            self.counters.expected = sum(expected) if all(expected) else None
            self.counters.written = sum(s.stats.delivered for s in streams)
            self.counters.analysed = sum(s.stats.analysed for s in streams)
            self.counters.captions = sum(s.stats.captions for s in streams)
            self.bar.update(final=final)
            return
        now = time.monotonic()
        if final or now - self.last_table >= self.status_every:
            self.last_table = now
            rows = [self._row(s, now) for s in streams]
            table = status_table(rows)
            for note in self._short_of_analysis(rows):
                table += "\n" + note
            if self.archive is not None:
                table += "\n" + archive_line(self.archive.status())
            if self.mqtt is not None:
                table += "\n" + mqtt_line(self.mqtt.status())
            for note in self.notes.values():
                table += "\n" + note
            print(table, file=sys.stderr, flush=True)

    def _short_of_analysis(self, rows: list[StreamRow]) -> list[str]:
        """A line for each live stream whose analysis has run well short of the rate asked
        for two tables in a row (the encoder saturated: the newest frames are analysed, the
        others counted in its drops); a warning the first time, for the log."""
        notes = []
        for stream, row in zip(self.streams, rows, strict=True):
            asked = stream.asked_rate
            wanted = row.in_fps if asked is None else min(asked, row.in_fps)
            short = stream.live and row.state in DELIVERING_STATES and wanted >= 0.5 and (
                row.analysed_fps < 0.8 * wanted)  # fmt: skip
            self.short[stream.name] = self.short.get(stream.name, 0) + 1 if short else 0
            if self.short[stream.name] < 2:
                continue
            note = (f"{stream.name}: analyses {row.analysed_fps:.1f} of the {wanted:.1f} "
                    "frames/s asked: the encoder cannot keep up (lower --analyze-fps, use "
                    "--int8 on a CPU, or a GPU)")  # fmt: skip
            if self.short[stream.name] == 2:
                log.warning("%s", note)
            notes.append(note)
        return notes

    def _meter_new_streams(self) -> None:
        """Meters for the streams added (or added again) since the last tick: the stream API
        and a reload add streams while the run runs; a tick comes every 0.1 s."""
        for gone in self.meters.keys() - {stream.name for stream in self.streams}:
            del self.meters[gone]
        for stream in self.streams:
            kept = self.meters.get(stream.name)
            if kept is None or kept[0] is not stream:
                self.meters[stream.name] = (stream, RateMeter(), RateMeter(), RateMeter())

    def _row(self, stream: StreamRun, now: float) -> StreamRow:
        _, m_in, m_ana, m_out = self.meters[stream.name]
        source = stream.source
        status = source.status
        p50, p95, p99 = stream.stats.latency.percentiles(50, 95, 99)
        state = status.state if source.connects else "playing" if stream.live else "file"
        return StreamRow(
            name=stream.name, state=state,
            in_fps=m_in.rate(stream.stats.decoded, now),
            analysed_fps=m_ana.rate(stream.stats.analysed, now),
            out_fps=m_out.rate(stream.stats.delivered, now), dropped=stream.dropped,
            p50_ms=p50 * 1000, p95_ms=p95 * 1000, p99_ms=p99 * 1000,
            reconnects=status.reconnects, damaged=status.damaged,
        )  # fmt: skip


def archive_line(status: dict[str, Any]) -> str:
    """The status table's line on the archive, from its plain `status()` dict.

    Example:
        >>> archive_line({"path": "arch", "state": "ok", "error": None, "moments": {
        ...     "written": 12, "waiting": 2, "queued": 3, "dropped": 0, "lost": 0},
        ...     "recordings": {"door": {"state": "recording", "detail": None, "bytes": 2_500_000}},
        ...     "clips": {"written": 1, "failed": 0, "waiting": 0}})
        'archive arch: ok, 12 moments (2 waiting, 3 queued); door recording 2.5 MB; 1 clips'
    """
    state = status["state"].upper() if status["error"] else status["state"]
    line = f"archive {status['path']}: {state}, {status['moments']['written']} moments"
    line += _counts(status["moments"], ("waiting", "queued", "dropped", "lost"))
    if status["error"]:
        line += f": {status['error']}; the streams go on"
    parts = [line]
    # A full disk stops the index and the recordings alike: the line says so once.
    said = status["error"] and any(words in status["error"] for words in _DISK_FULL)
    for name, rec in status["recordings"].items():
        detail = rec["detail"]
        if said and detail and detail.startswith(_RECORDING_FULL):
            detail = detail.removeprefix(_RECORDING_FULL)
        detail = f" ({detail})" if detail else ""
        parts.append(f"{name} {rec['state']} {rec['bytes'] / 1e6:.1f} MB{detail}")
    clips = status["clips"]
    if any(clips.values()):
        parts.append(f"{clips['written']} clips" + _counts(clips, ("waiting", "failed")))
    return "; ".join(parts)


_DISK_FULL = ("No space left on device", "Disk quota exceeded", "File too large",
              "the disk is full")  # fmt: skip
"""How the index's error says the disk is full (the OS's words, or ours)."""
_RECORDING_FULL = "the disk is full: "
"""How a recording's `detail` starts when the disk is full (`_segment_log.failed`)."""


def mqtt_line(status: dict[str, Any]) -> str:
    """The status table's line on MQTT, from the publisher's plain `status()` dict.

    Example:
        >>> mqtt_line({"broker": "mqtt://hub:1883", "connected": False, "published": 12,
        ...     "dropped": 2, "reconnects": 1, "queued": 40})
        'mqtt mqtt://hub:1883: NOT CONNECTED, 12 published (40 queued, 2 dropped, 1 reconnects)'
    """
    state = "connected" if status["connected"] else "NOT CONNECTED"
    counts = _counts(status, ("queued", "dropped", "reconnects"))
    return f"mqtt {status['broker']}: {state}, {status['published']} published{counts}"


def _counts(counts: dict[str, int], keys: tuple[str, ...]) -> str:
    """The counts of `keys` that are not 0 (or missing), as ` (3 queued, 1 lost)`; "" when
    all are 0."""
    shown = [f"{counts[key]} {key}" for key in keys if counts.get(key)]
    return f" ({', '.join(shown)})" if shown else ""
