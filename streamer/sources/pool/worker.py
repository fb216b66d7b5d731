"""A decode worker process's side: the real sources, decoding into shared-memory slots.

`main` serves the pipeline on a socket until told to quit or until the pipeline's process is
gone (the socket closes). Each stream is the same `FileSource` or `NetworkSource` the pipeline
would run, re-created from its spec; its frames go into the stream's slots, their records and
the source's state changes to the pipeline. The worker ignores Ctrl-C (the pipeline decides
when to stop), and its log records are logged by the pipeline's loggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from streamer.core.channel import Channel, DropPolicy
from streamer.core.frame import Frame
from streamer.sources.base import SourceBase, WorkerSpec
from streamer.sources.file import FileSource
from streamer.sources.network import NetworkSource
from streamer.sources.options import DecodePlan
from streamer.sources.pool.wire import (
    Close,
    End,
    Failed,
    FileSpec,
    FrameMeta,
    FrameReady,
    Free,
    FromWorker,
    Log,
    Need,
    NetworkSpec,
    Open,
    Quit,
    Ready,
    Recorded,
    Ring,
    SourceReport,
    Status,
    Stop,
    ToWorker,
    to_worker,
)
from streamer.sources.tap import PacketTap

__all__ = ["main", "source_from"]

log = logging.getLogger("streamer.sources")

LIVE_BURST = 16  # frames a live stream's worker holds while it waits for a slot (drop oldest)
STATUS_EVERY_S = 0.1  # how often a stream's state is compared with what was last sent

# Sends come from the loop and from decode threads (log records); reentrant, so a record
# logged while a message is being sent cannot deadlock.
_send_lock = threading.RLock()


def main(fd: int) -> None:
    """A decode worker's whole life: serve the pipeline on the socket `fd` until told to quit
    or until the pipeline's process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pipeline decides when to stop
    conn = Connection(fd)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardLogs(conn)]
    root.setLevel(logging.INFO)
    try:
        asyncio.run(_Worker(conn).serve())
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def source_from(spec: WorkerSpec) -> SourceBase:
    """The source a spec describes, as the pipeline's process had it."""
    match spec:
        case FileSpec(path, name, live, paced):
            return FileSource(path, name, live=live, paced=paced)
        case NetworkSpec(url, name, live, options):
            return NetworkSource(url, name, live=live, options=options)
    raise TypeError(f"decode worker: no source for a {type(spec).__name__}")


class _ForwardLogs(logging.Handler):
    """Sends the worker's log records to the pipeline's process, which logs them as its own."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            with _send_lock:
                self.conn.send(Log(record.levelno, record.name, text))
        except Exception:  # the pipeline is gone: nowhere to log to
            self.handleError(record)


class _Worker:
    """The worker's event loop: one task per stream it decodes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.streams: dict[int, _WorkerStream] = {}
        self.tasks: set[asyncio.Task] = set()
        self.quit = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def send(self, message: FromWorker) -> None:
        """Send to the pipeline; when it is gone, the command reader sees that and quits."""
        with _send_lock, contextlib.suppress(OSError, ValueError):
            self.conn.send(message)

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.send(Ready(os.getpid()))
        threading.Thread(target=self._read, name="commands", daemon=True).start()
        await self.quit.wait()
        for stream in self.streams.values():
            stream.stop.set()
        if self.tasks:  # a stream waiting for a slot never sees its stop: it is cancelled after
            await asyncio.wait(self.tasks, timeout=1.0)

    def _read(self) -> None:
        """Commands from the pipeline, onto the loop; a closed socket means quit."""
        assert self.loop is not None
        while True:
            message: ToWorker
            try:
                message = to_worker(self.conn.recv())
            except (EOFError, OSError):
                message = Quit()
            except TypeError:  # out of step with the pipeline: a bug, so leave loudly
                log.exception("decode worker: leaving")
                message = Quit()
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.loop.call_soon_threadsafe(self._dispatch, message)
            if isinstance(message, Quit):
                return

    def _dispatch(self, message: ToWorker) -> None:
        match message:
            case Quit():
                self.quit.set()
            case Open(stream_id, spec, plan, slots, tap):
                stream = _WorkerStream(stream_id, spec, slots, self)
                self.streams[stream_id] = stream
                task = stream.task = asyncio.ensure_future(stream.run(plan, tap))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            case Ring(stream_id, segment, slot_bytes):
                if (stream := self.streams.get(stream_id)) is not None:
                    stream.attach(segment, slot_bytes)
            case Free(stream_id, slot):
                if (stream := self.streams.get(stream_id)) is not None:
                    stream.free(slot)
            case Stop(stream_id):
                if (stream := self.streams.get(stream_id)) is not None:
                    stream.stop.set()
            case Close(stream_id):  # the pipeline is done with it, whatever state it is in
                if (stream := self.streams.pop(stream_id, None)) is not None:
                    stream.stop.set()
                    if stream.task is not None:
                        stream.task.cancel()


class _WorkerStream:
    """One stream in the worker: the real source, decoding into a channel that this task
    empties into the stream's shared-memory slots."""

    def __init__(self, stream_id: int, spec: WorkerSpec, slots: int, worker: _Worker) -> None:
        self.id = stream_id
        self.spec = spec
        self.slots = slots
        self.worker = worker
        self.stop = asyncio.Event()
        self.free_slots = list(range(slots))
        self.slot_freed = asyncio.Event()
        self.segment: SharedMemory | None = None
        self.slot_bytes = 0
        self.ring_ready: asyncio.Future[None] | None = None
        self.task: asyncio.Task | None = None

    async def run(self, plan: DecodePlan, tap: PacketTap | None) -> None:
        try:
            await self._pump(source_from(self.spec), plan, tap)
        except Exception as exc:  # reported to the pipeline, which fails the stream
            log.debug("worker stream failed", exc_info=True)
            self.worker.send(Failed(self.id, f"{type(exc).__name__}: {exc}"))
        finally:
            self.detach()

    async def _pump(self, source: SourceBase, plan: DecodePlan, tap: PacketTap | None) -> None:
        live = self.spec.live
        policy = DropPolicy.DROP_OLDEST if live else DropPolicy.BLOCK
        # Live: room for a connection's first burst (the frames FFmpeg decoded while probing
        # arrive at once) while the first segment is set up; empty again right after.
        capacity = LIVE_BURST if live else 2
        channel: Channel[Frame] = Channel(capacity, policy, name=f"{self.spec.name}/worker")
        if tap is None:
            running = asyncio.ensure_future(source.run(channel, self.stop, plan))
        else:
            running = asyncio.ensure_future(source.run(channel, self.stop, plan, tap))
        reporting = asyncio.ensure_future(self._report_status(source, tap))
        try:
            async for frame in channel:
                await self._send_frame(frame, channel.dropped)
            await running
        finally:
            reporting.cancel()
            running.cancel()
        if tap is not None:  # its last state: the files are finished now
            self.worker.send(Recorded(self.id, tap.state))
        self.worker.send(End(self.id, SourceReport.of(source)))

    async def _report_status(self, source: SourceBase, tap: PacketTap | None) -> None:
        """The source's state whenever it changes (but its frame count, which the pipeline
        counts itself), and its tap's."""
        last = recorded = None
        while True:
            report = _report(source)
            if report != last:
                self.worker.send(Status(self.id, report))
                last = report
            if tap is not None and tap.state != recorded:
                recorded = tap.state
                self.worker.send(Recorded(self.id, recorded))
            await asyncio.sleep(STATUS_EVERY_S)

    async def _send_frame(self, frame: Frame, dropped: int) -> None:
        picture = frame.picture
        pictures = []
        if picture.has_full:
            pictures.append(("full", picture.full()))
        if picture.analysis is not None:
            pictures.append(("analysis", picture.analysis))
        needed = sum(array.nbytes for _, array in pictures)
        slot = await self._slot(needed)
        placed = []
        offset = slot * self.slot_bytes
        for kind, array in pictures:
            assert self.segment is not None
            view = np.ndarray(array.shape, np.uint8, buffer=self.segment.buf, offset=offset)
            view[...] = array
            del view
            placed.append((kind, offset, array.shape))
            offset += array.nbytes
        meta = FrameMeta(
            frame.index, frame.pts, frame.captured, frame.pts_raw, frame.time_base,
            tuple(placed), dropped,
        )  # fmt: skip
        self.worker.send(FrameReady(self.id, slot, meta))

    async def _slot(self, needed: int) -> int:
        """A free slot of at least `needed` bytes, asking for a (bigger) segment when needed."""
        if needed > self.slot_bytes:
            while len(self.free_slots) < self.slots:  # the old segment must be read out
                await self._slot_freed()
            self.detach()
            self.ring_ready = asyncio.get_running_loop().create_future()
            # Room for a little growth, so a stream that changes size by a few pixels does not
            # need a new segment every time.
            self.worker.send(Need(self.id, needed + needed // 8))
            await self.ring_ready
        while not self.free_slots:
            await self._slot_freed()
        return self.free_slots.pop()

    async def _slot_freed(self) -> None:
        self.slot_freed.clear()
        await self.slot_freed.wait()

    def attach(self, name: str, slot_bytes: int) -> None:
        """Map the segment the pipeline made for this stream. The pipeline owns it: this
        process must not remove it when it exits, so it is not left to the resource tracker."""
        if sys.version_info >= (3, 13):
            self.segment = SharedMemory(name=name, track=False)
        else:
            self.segment = SharedMemory(name=name)
            resource_tracker.unregister(self.segment._name, "shared_memory")  # type: ignore[attr-defined]
        self.slot_bytes = slot_bytes
        if self.ring_ready is not None and not self.ring_ready.done():
            self.ring_ready.set_result(None)

    def free(self, slot: int) -> None:
        self.free_slots.append(slot)
        self.slot_freed.set()

    def detach(self) -> None:
        if self.segment is not None:
            with contextlib.suppress(BufferError, OSError):
                self.segment.close()
            self.segment = None
            self.slot_bytes = 0


def _report(source: SourceBase) -> SourceReport:
    """The source's state without its frame count (the pipeline counts frames itself), so
    that a report differs from the last one only when something else changed."""
    report = SourceReport.of(source)
    return replace(report, status=replace(report.status, frames=0))
