"""The coordinator: the run's one status, viewer, `/metrics` and webhook, fed by every shard.

The observers a run's configuration asks for (web viewer, webhook sender) run here, in the
driver, unchanged: they are given a `RemoteRun` whose streams (`RemoteStream`) look like the
one-process `StreamRun`s they read, kept up to date from the shards' relays
(`streamer.cluster.relay`), and the events the shards saw are made again here in order. So
`/api/status`, `/metrics`, the page's video and its captions and alerts show every stream,
whichever node runs it, and a stream carries its node.

::

    shard ─ Relay.read() ─┐   every READ_EVERY_S
    shard ─ Relay.read() ─┼─► Coordinator ─► RemoteStream.update  ─► status table, /api/status,
    shard ─ Relay.read() ─┘                  observers.caption/alert/analysis/frame   /metrics
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from streamer.analysis.service import ModelCard, ServiceLoad
from streamer.cluster.desk import DeskView, StateLog
from streamer.cluster.placement import ShardRef
from streamer.cluster.relay import Embedded, RelayBatch, StreamSnapshot
from streamer.config import RunConfig
from streamer.core import startup
from streamer.core.events import Observer, Observers
from streamer.core.frame import Frame
from streamer.core.stats import LATENCY_BUCKETS, Histogram
from streamer.errors import ArchiveError
from streamer.report import Reporter
from streamer.sources.status import SourceStatus

__all__ = ["Coordinator", "RemoteRun", "RemoteStream"]

log = logging.getLogger("streamer")

READ_EVERY_S = 0.25  # how often the shards' relays are read


class _Latency:
    """The latency of a remote stream as `LatencyTracker` answers it (three percentiles)."""

    def __init__(self) -> None:
        self.values = {50: math.nan, 95: math.nan, 99: math.nan}
        self.histogram = Histogram(LATENCY_BUCKETS)

    def percentiles(self, *qs: float) -> tuple[float, ...]:
        return tuple(self.values.get(int(q), math.nan) for q in qs)

    def __len__(self) -> int:
        return self.histogram.count


class _Stats:
    """A remote stream's counters, as `StreamStats` holds them."""

    def __init__(self) -> None:
        self.decoded = self.analysed = self.delivered = 0
        self.captions = self.caption_timeouts = self.alerts = 0
        self.latency = _Latency()


class _Source:
    """What the status surfaces read of a remote stream's source."""

    def __init__(self, live: bool, connects: bool, path: str | None) -> None:
        self.live = live
        self.connects = connects
        self.path = path  # a file's path (the nodes and the coordinator share it)
        self.status = SourceStatus(state="connecting" if connects else "queued")


class _Latest:
    """The latest analysis of a remote stream (`StreamRun.latest` has `.annotation`)."""

    __slots__ = ("annotation",)

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation


class RemoteStream:
    """A stream that runs on a shard, as the coordinator's observers read it.

    Args:
        name: the stream.
        live: the live contract.
        connects: a camera or network stream (else a file).
        path: a file's path.
    """

    def __init__(self, name: str, live: bool, connects: bool, path: str | None = None) -> None:
        self.name = name
        self.live = live
        self.node: str | None = None  # the host of the shard that runs it now
        self.stats = _Stats()
        self.dropped = 0
        self.caption = None
        self.latest: _Latest | None = None
        self.expected: int | None = None
        self.asked_rate: float | None = None
        self.source = _Source(live, connects, path)

    def update(self, snapshot: StreamSnapshot, node: str) -> None:
        """Take the shard's state of the stream."""
        stats = self.stats
        stats.decoded, stats.analysed = snapshot.decoded, snapshot.analysed
        stats.delivered, stats.captions = snapshot.delivered, snapshot.captions
        stats.caption_timeouts, stats.alerts = snapshot.caption_timeouts, snapshot.alerts
        stats.latency.values = dict(zip((50, 95, 99), snapshot.latency, strict=True))
        stats.latency.histogram = snapshot.histogram
        self.dropped = snapshot.dropped
        self.caption = snapshot.caption
        self.latest = _Latest(snapshot.annotation) if snapshot.annotation is not None else None
        self.expected = snapshot.expected
        self.asked_rate = snapshot.asked_rate
        self.source.status = snapshot.status
        self.node = node

    def lost(self) -> None:
        """Its shard was lost: it shows as offline until it runs again."""
        status = self.source.status
        self.source.status = SourceStatus(
            state="offline", offline_since=time.time(), reconnects=status.reconnects,
            frames=status.frames, damaged=status.damaged,
            last_error=f"its node {self.node} was lost",
        )  # fmt: skip


class _PoolView:
    """The encoder service as the status surfaces read it: the model, and the load summed
    over every shard's view of the pool."""

    def __init__(self, model: ModelCard) -> None:
        self.model = model
        self.loads: dict[str, ServiceLoad] = {}  # shard → its latest load

    def load(self) -> ServiceLoad:
        return ServiceLoad.total(list(self.loads.values()))


@dataclass(frozen=True)
class _Recording:
    """A live stream's recorder as the archive's status reads it (its last relayed state)."""

    state: Any


class RemoteRun:
    """What observers are given as `run` on a cluster (the one-process `_Run`'s surface)."""

    def __init__(self, config: RunConfig, streams: list[RemoteStream], model: ModelCard,
                 stop: asyncio.Event) -> None:  # fmt: skip
        self.config = config
        self.streams = streams
        self.client: DeskView | None = None  # the LLM desk's client, as last read
        self.encoder = _PoolView(model)
        self.started = time.monotonic()
        self.stop = stop
        self.archive: Any = None  # the coordinator's archive observer, with --archive
        self.recorders: dict[str, _Recording] = {}  # live streams' recorders, as last read
        self.mqtt: Any = None  # ... and its MQTT publisher, with --mqtt
        self.control: Any = None  # the stream API's control (`streamer.cluster.control`)


class Coordinator:
    """Reads the shards' relays and tells the run's observers, as one process would.

    Args:
        run: the remote run the observers read.
        observers: the run's observers (built from its configuration).
    """

    def __init__(
        self, run: RemoteRun, observers: Sequence[Observer], desk: Any = None,
        desk_view: DeskView | None = None,
    ) -> None:  # fmt: skip
        self.run = run
        self.desk = desk
        self.run.client = desk_view
        self.llm_log = StateLog(desk_view) if desk_view is not None else None
        self.observers = Observers(list(observers))
        self.by_name = {stream.name: stream for stream in run.streams}
        self.lost_events = 0
        self._storing: set[asyncio.Task] = set()  # summaries on their way into the archive

    async def start(self) -> None:
        """Start the observers (the viewer binds its port here); MQTT announces the alerts of
        a stream that has its own set (`RunConfig.stream_settings`) instead of the run's."""
        await self.observers.start(self.run)
        if self.run.mqtt is not None:
            for name, own in self.run.config.stream_settings.items():
                if "alerts" in own:
                    self.run.mqtt.set_alerts(name, own["alerts"])

    async def stop(self) -> None:
        if self._storing:
            await asyncio.wait(set(self._storing))
        await self.observers.stop()

    async def keep_reading(
        self,
        shards: Callable[[], list[ShardRef]],
        reporter: Reporter | None,
        until: asyncio.Event,
    ) -> None:
        """Read every shard each READ_EVERY_S until `until` is set; tick the status table.

        Ended by the event, not by cancelling: a read cancelled after the shards' drains ran
        would lose what they handed over (a drain takes its events; Ray runs it to the end
        whether or not its caller still waits)."""
        while not until.is_set():
            await self.read(shards())
            if reporter is not None:
                try:
                    reporter.tick()
                except Exception:  # the status table is not worth the run's observers
                    log.exception("the status table failed; the run goes on without it")
                    reporter = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), READ_EVERY_S)

    async def read(self, shards: Sequence[ShardRef]) -> None:
        """Read each of `shards` once (a shard that is gone is skipped: its jobs say so)."""
        watched = self.watched
        reads = [shard.handle.drain.remote(watched) for shard in shards]
        if self.desk is not None:
            reads.append(self.desk.view.remote())
        results = await asyncio.gather(*reads, return_exceptions=True)
        if self.desk is not None:
            view = results.pop()
            if isinstance(view, DeskView):  # the LLM's state, for the status surfaces
                self.run.client = view
                self.llm_log.saw(view)
        for shard, result in zip(shards, results, strict=True):
            if isinstance(result, BaseException):
                log.debug("%s not read: %s", shard.name, type(result).__name__)
                continue
            batches, load = result
            self.take(shard.name, shard.label, batches, load)

    def add(self, stream: RemoteStream, alerts: tuple[str, ...] = ()) -> None:
        """A stream the stream API added: shown from now on (viewer, /metrics, MQTT)."""
        self.run.streams.append(stream)
        self.by_name[stream.name] = stream
        self.observers.stream_added(stream)
        if self.run.mqtt is not None:
            self.run.mqtt.add_stream(stream.name, alerts)

    def remove(self, name: str) -> None:
        """A stream the stream API removed: no longer shown."""
        stream = self.by_name.pop(name, None)
        if stream is None:
            return
        self.run.streams.remove(stream)
        self.observers.stream_removed(stream)
        if self.run.mqtt is not None:
            self.run.mqtt.remove_stream(name)

    def lost(self, stream: str) -> None:
        """`stream`'s shard was lost: it shows as such until it runs again."""
        self.by_name[stream].lost()

    @property
    def watched(self) -> bool:
        """Someone watches the video (a viewer has a client): the shards relay frames."""
        return self.observers.wants_frames

    def take(self, shard: str, node: str, batches: Sequence[RelayBatch], load: Any) -> None:
        """Apply what one shard's relays returned: state first, then events in order."""
        if load is not None:
            self.run.encoder.loads[shard] = load
        for batch in batches:
            for snapshot in batch.snapshots:
                if snapshot.annotation is not None:  # as the driver learns it, a relay later
                    startup.mark(startup.LAST)
                stream = self.by_name.get(snapshot.name)
                if stream is not None:
                    stream.update(snapshot, node)
                if snapshot.recording is not None:
                    self.run.recorders[snapshot.name] = _Recording(snapshot.recording)
            for event in batch.events:
                value = event.value
                if event.hook == "embedded":
                    self._embedded(event.stream, value)
                    continue
                if event.hook == "summary":
                    self._store(value)
                elif event.hook == "alert":
                    value = self._clip(value)
                getattr(self.observers, event.hook)(event.stream, value)
            self.lost_events += batch.lost
            for name, (jpeg, timeline) in batch.frames.items():
                image = _decode(jpeg)
                if image is not None:
                    self.observers.frame(name, image, timeline)

    def _clip(self, alert: Any) -> Any:
        """With --archive, the alert's clip is cut here, from the shared archive directory (a
        file's clip from the file, a live one's from the recordings its node writes there),
        under the name its shard gave it as it fired (the stream's JSON Lines has it); the
        webhook and the viewer get that path."""
        archive = self.run.archive
        if archive is None:
            return alert
        captured = time.monotonic() - (time.time() - alert.wall)
        image = alert.image if alert.image is not None else np.zeros((1, 1, 3), np.uint8)
        frame = Frame(alert.stream, alert.frame_index, alert.time, captured, image)
        return archive.clip_alert(alert, frame)  # only the capture time is read of the frame

    def _store(self, summary: Any) -> None:
        """A summary made on a shard, into the archive (on a thread; `stop` waits for it)."""
        archive = self.run.archive.archive if self.run.archive is not None else None
        if archive is None:
            return
        task = asyncio.get_running_loop().create_task(_add_summary(archive, summary))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)

    def _embedded(self, stream: str, moment: Embedded) -> None:
        """An analysed frame of a shard, to the archive: its picture as the frame's pixels,
        captured when it was on this machine's monotonic clock."""
        picture = _decode(moment.picture)
        if picture is None:
            return
        captured = time.monotonic() - (time.time() - moment.wall)
        frame = Frame(stream, moment.annotation.frame_index, moment.annotation.pts, captured,
                      picture)  # fmt: skip
        self.observers.embedded(stream, moment.annotation, moment.embedding, frame, moment.alerts)


async def _add_summary(archive: Any, summary: Any) -> None:
    try:
        await asyncio.to_thread(archive.add_summaries, [summary])
    except ArchiveError as exc:
        log.warning("archive: the summary of %s was not stored: %s", summary.stream, exc)


def _decode(jpeg: bytes) -> np.ndarray | None:
    """RGB pixels of a relayed JPEG (the observers take frames as the pipeline draws them)."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
