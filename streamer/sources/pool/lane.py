"""One pooled stream on the pipeline's side: its shared-memory segment, its events, its delivery.

The worker handle's receiver thread hands each of the stream's messages to its lane
(`receive`): a frame's pixels are copied out of their slot at once (a memcpy, without the
lock), a request for a segment is served there, and everything else goes to the lane's event
queue on the loop, where `run` delivers frames, frees slots and keeps the source in step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Protocol

import numpy as np

from streamer.core.channel import Channel, ChannelClosed, DropPolicy
from streamer.core.frame import Frame, Picture
from streamer.sources.base import Source, WorkerSpec
from streamer.sources.options import DecodePlan
from streamer.sources.pool.wire import (
    Close,
    End,
    Failed,
    FrameMeta,
    FrameReady,
    Free,
    FromWorker,
    Need,
    Open,
    Recorded,
    Ring,
    Status,
    Stop,
    ToWorker,
)
from streamer.sources.tap import PacketTap

__all__ = ["FILE_SLOTS", "LIVE_SLOTS", "Lane"]

log = logging.getLogger("streamer.sources")

LIVE_SLOTS = 4  # frames in flight per live stream: copying them out takes well under a frame
FILE_SLOTS = 8  # per file stream: the pipeline's own queue does the rest of the buffering
STOP_GRACE_S = 5.0  # after a stop, how long a stream waits for its worker to confirm


class WorkerHandle(Protocol):
    """What a lane uses of its worker (`streamer.sources.pool.parent.WorkerHandle`)."""

    prefix: str  # of its shared-memory segments' names
    lanes: dict[int, Lane]
    alive: bool
    exit_code: int | None

    def send(self, message: ToWorker) -> bool: ...


# What the loop's side of a lane acts on: the worker's messages, and these.


@dataclass(frozen=True, slots=True)
class _Arrived:
    """A frame, its pixels already copied out of slot `slot`."""

    frame: Frame
    slot: int
    dropped: int


@dataclass(frozen=True, slots=True)
class _Died:
    """The worker process is gone."""

    exit_code: int | None


@dataclass(frozen=True, slots=True)
class _Gone:
    """The worker did not confirm a stop in time: go on without it."""


_Event = _Arrived | _Died | _Gone | Status | Recorded | End | Failed


class Lane:
    """One pooled stream: a source of this process decoded by `worker` into `out`."""

    def __init__(
        self,
        lane_id: int,
        source: Source,
        out: Channel[Frame],
        worker: WorkerHandle,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.id = lane_id
        self.source = source
        self.out = out
        self.worker = worker
        self.loop = loop
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        self.slots = LIVE_SLOTS if source.live else FILE_SLOTS
        # The receiver thread reads and replaces segments, the loop removes them at the end.
        self._segment_lock = threading.Lock()
        self.segment: SharedMemory | None = None
        self.segments: list[SharedMemory] = []
        self.generation = 0
        self.worker_dropped = 0
        self.delivered = 0
        self.closed = False
        self.last_pts: float | None = None
        self.tap: PacketTap | None = None

    # -- receiver thread -----------------------------------------------------------------------

    def receive(self, message: FromWorker) -> None:
        """A message of the worker for this stream (receiver thread)."""
        match message:
            case FrameReady(_, slot, meta):
                self._post(_Arrived(self._unpack(meta), slot, meta.dropped))
            case Need(_, slot_bytes):
                self._new_segment(slot_bytes)
            case Status() | Recorded() | End() | Failed():
                self._post(message)
            case _:
                raise TypeError(f"decode pool: {type(message).__name__} is not for a stream")

    def died(self, exit_code: int | None) -> None:
        """The worker process is gone (receiver thread)."""
        self._post(_Died(exit_code))

    def _post(self, event: _Event) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is long over
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def _unpack(self, meta: FrameMeta) -> Frame:
        """Copy the frame's pixels out of its slot (the worker may reuse the slot after)."""
        pictures: dict[str, np.ndarray] = {}
        with self._segment_lock:
            for kind, offset, shape in meta.pictures:
                if self.segment is None:  # the stream is being closed: nobody wants it now
                    break
                view = np.ndarray(shape, np.uint8, buffer=self.segment.buf, offset=offset)
                pictures[kind] = view.copy()
                del view  # no export of the segment's buffer may outlive this call
        full, small = pictures.get("full"), pictures.get("analysis")
        image = full if small is None and full is not None else Picture(full, small)
        return Frame(
            stream=self.source.name, index=meta.index, pts=meta.pts, captured=meta.captured,
            image=image, pts_raw=meta.pts_raw, time_base=meta.time_base,
        )  # fmt: skip

    def _new_segment(self, slot_bytes: int) -> None:
        """Make the stream's segment (receiver thread). The worker asks only when none of its
        frames is in flight, so the old segment is read to the end and can go."""
        with self._segment_lock:
            if self.closed:
                return
            self._drop_segments()
            self.generation += 1
            name = f"{self.worker.prefix}{self.id}-{self.generation}"
            try:
                segment = SharedMemory(name=name, create=True, size=self.slots * slot_bytes)
            except OSError as exc:  # /dev/shm full or not there: this stream cannot go on
                self._post(Failed(self.id, f"no shared memory for its frames ({exc})"))
                self.worker.send(Stop(self.id))
                return
            self.segments.append(segment)
            self.segment = segment
        self.worker.send(Ring(self.id, name, slot_bytes))

    def _drop_segments(self) -> None:
        """Unmap and remove this stream's segments (holding `_segment_lock`)."""
        for segment in self.segments:
            with contextlib.suppress(BufferError, OSError):
                segment.close()
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()
        self.segments.clear()
        self.segment = None

    # -- event loop ----------------------------------------------------------------------------

    async def run(
        self,
        spec: WorkerSpec,
        plan: DecodePlan,
        stop: asyncio.Event,
        tap: PacketTap | None = None,
    ) -> None:
        """Have the worker decode the stream (and record its packets with a copy of `tap`);
        deliver its frames until it is over. `tap` follows its copy's state."""
        self.worker.lanes[self.id] = self
        self.tap = tap
        opened = self.worker.send(Open(self.id, spec, plan, self.slots, tap))
        if not opened or not self.worker.alive:
            self._died(self.worker.exit_code)
            return
        stopper = asyncio.ensure_future(self._forward_stop(stop))
        try:
            while not await self._handle(await self.events.get()):
                pass
        finally:
            stopper.cancel()

    async def _forward_stop(self, stop: asyncio.Event) -> None:
        """On a stop, tell the worker; if it does not confirm in time, go on without it."""
        await stop.wait()
        self.worker.send(Stop(self.id))
        await asyncio.sleep(STOP_GRACE_S)
        log.warning("%s: the decode worker did not confirm the stop; going on", self.source.name)
        self.events.put_nowait(_Gone())

    async def _handle(self, event: _Event) -> bool:
        """Act on one event; True when the stream is over."""
        match event:
            case _Arrived(frame, slot, dropped):
                await self._deliver(frame, dropped)
                self.worker.send(Free(self.id, slot))
                return False
            case Status(_, report):
                report.apply_to(self.source)
                return False
            case Recorded(_, state):
                if self.tap is not None:
                    self.tap.follow(state)
                return False
            case End(_, report):
                report.apply_to(self.source)
                return True
            case Failed(_, message):
                self.source.lost(
                    f"{self.source.name}: decoding failed in the worker: {message}", self.last_pts
                )
                return True
            case _Died(exit_code):
                self._died(exit_code)
                return True
            case _Gone():
                return True
        raise TypeError(f"decode pool: unknown event {type(event).__name__}")

    async def _deliver(self, frame: Frame, dropped: int) -> None:
        if dropped > self.worker_dropped:  # dropped in the worker: count them as the stream's
            self.out.dropped += dropped - self.worker_dropped
            self.worker_dropped = dropped
        try:
            if self.out.policy is DropPolicy.DROP_OLDEST:
                self.out.put_nowait(frame)
            else:
                await self.out.put(frame)
        except ChannelClosed:  # nobody reads any more: stop decoding
            self.worker.send(Stop(self.id))
            return
        self.delivered += 1
        self.last_pts = frame.pts
        self.source.frame_delivered()

    def _died(self, exit_code: int | None) -> None:
        code = "" if exit_code is None else f" (exit code {exit_code})"
        self.source.lost(
            f"{self.source.name}: its decode worker process died{code} after "
            f"{self.delivered} frames",
            self.last_pts,
        )

    def close(self) -> None:
        """The stream is over here: tell the worker to drop it, and remove its segments."""
        self.worker.lanes.pop(self.id, None)
        self.worker.send(Close(self.id))
        with self._segment_lock:
            self.closed = True
            self._drop_segments()
