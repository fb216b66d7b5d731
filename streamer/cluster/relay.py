"""What a shard tells the coordinator: its streams' state, their events, a frame to watch.

A `Relay` is the one observer of a shard's run (`run_pipeline(..., observers=[relay],
config_observers=False)`): the run's own observers — web viewer, webhook — live on the
coordinator, which reads each shard's relays a few times a second (`Shard.drain`) and hands
what they hold to those observers as if the streams ran there (`streamer.cluster.coordinator`).

What crosses per read is small: a `StreamSnapshot` per stream (counters, three latency
percentiles, the latency histogram, the source's state, the caption and latest annotation),
the events since the last read (analyses, captions, alerts with their snapshot, summaries),
and — only while someone watches the viewer — the newest drawn frame of each stream as a JPEG.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.core.events import Observer
from streamer.core.frame import Annotation, Caption, Frame
from streamer.core.stats import Histogram
from streamer.llm.images import encode_jpeg
from streamer.sources.status import SourceStatus

__all__ = ["Embedded", "Event", "FrameRelay", "Relay", "RelayBatch", "StreamSnapshot"]

MAX_EVENTS = 4096  # events kept between two reads; past it the oldest go (and are counted)
PERCENTILES = (50, 95, 99)
FRAME_EDGE = 1280  # a relayed frame's long edge at most: the viewer shows it no bigger
PICTURE_QUALITY = 90  # an analysed picture, relayed for the archive's thumbnail


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """One stream's state on its shard, as status surfaces read it.

    Attributes:
        name, live: the stream.
        decoded, analysed, delivered, captions, caption_timeouts, alerts: its counters.
        dropped: frames dropped anywhere in the stream.
        latency: capture → written, seconds, at `PERCENTILES` (NaN before the first frame).
        histogram: every latency of the run, bucketed (for `/metrics`).
        status: the source's state.
        caption: the caption shown now.
        annotation: the latest analysis.
        expected: a file's frame count, None for a live stream or when unknown.
        recording: its recorder's state (`TapState`) with --archive, None without one.
        asked_rate: the analysis rate asked for it (frames/s; None: every frame).
    """

    name: str
    live: bool
    decoded: int
    analysed: int
    delivered: int
    captions: int
    caption_timeouts: int
    alerts: int
    dropped: int
    latency: tuple[float, float, float]
    histogram: Histogram
    status: SourceStatus
    caption: Caption | None
    annotation: Annotation | None
    expected: int | None
    recording: Any = None
    asked_rate: float | None = None

    @classmethod
    def of(cls, stream: Any, recorder: Any = None) -> StreamSnapshot:
        """The snapshot of a running `StreamRun` (and of its recorder, when it has one)."""
        stats = stream.stats
        p50, p95, p99 = stats.latency.percentiles(*PERCENTILES)
        latest = stream.latest.annotation if stream.latest is not None else None
        return cls(
            name=stream.name, live=stream.live, decoded=stats.decoded, analysed=stats.analysed,
            delivered=stats.delivered, captions=stats.captions,
            caption_timeouts=stats.caption_timeouts, alerts=stats.alerts,
            dropped=stream.dropped, latency=(p50, p95, p99), histogram=stats.latency.histogram,
            status=stream.source.status, caption=stream.caption, annotation=latest,
            expected=stream.expected,
            recording=recorder.state if recorder is not None else None,
            asked_rate=stream.asked_rate,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Embedded:
    """An analysed frame as the archive indexes it (`Observer.embedded`'s arguments, with the
    frame reduced to what crosses: its analysis picture as JPEG and its wall-clock time).

    Attributes:
        annotation: its tags and scene score.
        embedding: its pooled embedding, float32.
        picture: JPEG of its analysis picture (the thumbnail's source); bytes once read.
        wall: `time.time()` when it was captured (monotonic clocks differ between machines).
        alerts: the alerts that fired on it.
    """

    annotation: Annotation
    embedding: np.ndarray
    picture: Any
    wall: float
    alerts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """An observer call made on the shard, to be made again on the coordinator.

    Attributes:
        hook: "analysis", "caption", "alert", "alert_cleared", "summary" or "embedded".
        stream: the stream it is about.
        value: the `Annotation`, `Caption`, `Alert`, `Summary` or `Embedded`.
    """

    hook: str
    stream: str
    value: Any


@dataclass(frozen=True, slots=True)
class RelayBatch:
    """What one read of a relay returns.

    Attributes:
        snapshots: every stream of the run, now.
        events: the events since the last read, in order.
        lost: events dropped since the last read (the coordinator read too slowly).
        frames: stream → (JPEG of its newest drawn frame, its timeline), while watched.
    """

    snapshots: tuple[StreamSnapshot, ...]
    events: tuple[Event, ...]
    lost: int
    frames: dict[str, tuple[bytes, float]]


class Relay(Observer):
    """The observer of one shard run: keeps its events until the coordinator reads them.

    Args:
        embedded: also relay every analysed frame (`Embedded`), for the coordinator's archive.
    """

    def __init__(self, *, embedded: bool = False) -> None:
        self._embedded = embedded
        self._run: Any = None
        self._events: collections.deque[Event] = collections.deque()
        self._lost = 0
        self._frames: dict[str, tuple[np.ndarray, float]] = {}
        self.watched = False  # the coordinator has a viewer open: relay drawn frames

    async def start(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        """The pipeline's run it was started with (None before): the shard reaches the run's
        stream control through it."""
        return self._run

    def analysis(self, stream: str, annotation: Annotation) -> None:
        self._keep(Event("analysis", stream, annotation))

    def caption(self, stream: str, caption: Caption) -> None:
        self._keep(Event("caption", stream, caption))

    def alert(self, stream: str, alert: Any) -> None:
        self._keep(Event("alert", stream, alert))

    def alert_cleared(self, stream: str, cleared: Any) -> None:
        self._keep(Event("alert_cleared", stream, cleared))

    def summary(self, stream: str, summary: Any) -> None:
        self._keep(Event("summary", stream, summary))

    def embedded(
        self, stream: str, annotation: Annotation, embedding: np.ndarray, frame: Frame,
        alerts: tuple[str, ...],
    ) -> None:  # fmt: skip
        if self._embedded:
            wall = time.time() - (time.monotonic() - frame.captured)
            moment = Embedded(annotation, embedding, frame.analysis_image, wall, alerts)
            self._keep(Event("embedded", stream, moment))

    def frame(self, stream: str, image: np.ndarray, timeline: float) -> None:
        self._frames[stream] = (image, timeline)  # the newest only; encoded when read

    def _keep(self, event: Event) -> None:
        if len(self._events) >= MAX_EVENTS:
            self._events.popleft()
            self._lost += 1
        self._events.append(event)

    async def read(self) -> RelayBatch:
        """The streams now, and what happened since the last read (taken: read once). The
        state is taken on the event loop; the frames are encoded on a thread."""
        streams = self._run.streams if self._run is not None else []
        recorders = getattr(self._run, "recorders", None) or {}
        snapshots = tuple(StreamSnapshot.of(s, recorders.get(s.name)) for s in streams)
        events, self._events = tuple(self._events), collections.deque()
        lost, self._lost = self._lost, 0
        frames, self._frames = self._frames, {}
        if frames or self._embedded:
            events, jpegs = await asyncio.to_thread(_encoded, events, frames)
        else:
            jpegs = {}
        return RelayBatch(snapshots, events, lost, jpegs)


class FrameRelay(Relay):
    """A relay that may be asked for drawn frames (the run has a web viewer): the pipeline then
    decodes and draws full frames, and hands them over while the coordinator watches."""

    @property
    def wants_frames(self) -> bool:
        return self.watched


def _encoded(
    events: tuple[Event, ...], frames: dict[str, tuple[np.ndarray, float]]
) -> tuple[tuple[Event, ...], dict[str, tuple[bytes, float]]]:
    """The events with their analysed pictures as JPEG, and the frames as JPEG (a thread)."""
    out = []
    for event in events:
        if event.hook == "embedded":
            moment = event.value
            jpeg = encode_jpeg(moment.picture, max(moment.picture.shape), PICTURE_QUALITY)
            event = Event(event.hook, event.stream, dataclasses.replace(moment, picture=jpeg))
        out.append(event)
    jpegs = {name: (encode_jpeg(image, FRAME_EDGE), at) for name, (image, at) in frames.items()}
    return tuple(out), jpegs
