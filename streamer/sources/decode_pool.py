"""Decode worker processes: files and network streams decoded outside the pipeline's process.

Decode itself runs in C without Python's lock, but every frame also costs Python work in the
decode thread (PyAV's wrappers, the frame record, the hand-off to the event loop). With many
streams in one process that work queues on the one lock and decode becomes the limit; worker
processes each take a share of the streams. The encoder stays in the pipeline's process: one
GPU worker for every stream.

::

    pipeline process                                    worker process (one per worker)
      DecodePool.run(source, out, stop)                   the same FileSource / NetworkSource,
        ("open", stream) ─────────────────────────────►   decoding in its own thread
        receiver thread: copy the pixels out of the   ◄──  ("frame", slot, metadata): pixels in
          shared-memory slot, frame → the loop               a shared-memory slot of the stream
        out.put(frame) (waits under BLOCK), then
        ("free", slot) ───────────────────────────────►   the slot can be written again

Each stream has a ring of slots in one shared-memory segment sized for its frame (both
pictures of a `DecodePlan`: full size and analysis size). The pipeline's process creates every
segment (the worker asks for one, and again when a live stream comes back larger) and unlinks
it when the stream ends or the worker dies, so none is left behind. Pixels are copied out on
arrival (a memcpy, without the lock), so a slot is never read while the worker rewrites it and
no frame of the pipeline points into memory that goes away.

The slots are also the flow control. A file stream's slot is freed only once its frame is in
the pipeline's channel, so a slow pipeline holds the worker back and every frame arrives, in
order (the file contract). A live stream's frame is handed on without waiting (the channel
drops the oldest), and frames the worker drops while no slot is free are added to the
channel's drop count.

A worker ignores Ctrl-C (the pipeline stops it), leaves when the pipeline's process goes away
(its socket closes), and its logging goes to the pipeline's loggers. A worker that dies fails
its streams with the reason (a file is reported incomplete, a live source failed); nothing
waits for it.

Workers start without importing the `streamer` package's top level (which loads the encoders
and torch): only `streamer.sources`, PyAV and numpy, in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, replace
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np

from streamer import errors
from streamer.core.channel import Channel, ChannelClosed, DropPolicy
from streamer.core.frame import Frame, Picture
from streamer.errors import SourceDecodeError, SourceError
from streamer.sources.file import FileSource
from streamer.sources.network import NetworkSource
from streamer.sources.options import DecodePlan, SourceOptions

__all__ = ["DecodePool", "decoding", "worker_count"]

log = logging.getLogger("streamer.sources")

LIVE_SLOTS = 4  # frames in flight per live stream: copying them out takes well under a frame
FILE_SLOTS = 8  # per file stream: the pipeline's own queue does the rest of the buffering
LIVE_BURST = 16  # frames a live stream's worker holds while it waits for a slot (drop oldest)
START_TIMEOUT_S = 30.0  # a worker that has not said "ready" by then is broken
STOP_GRACE_S = 5.0  # after a stop, how long a stream waits for its worker to confirm
QUIT_GRACE_S = 3.0  # at shutdown, how long a worker may take to leave before it is killed
SHM_FOLDER = Path("/dev/shm")  # where Linux keeps POSIX shared memory (for the final sweep)

_PACKAGE = Path(__file__).resolve().parents[1]  # the `streamer` package folder
# Register `streamer` as a bare package (its path only) so that importing this module does not
# run streamer/__init__.py, then serve on the socket whose descriptor is argv[2].
_BOOTSTRAP = (
    "import sys, types\n"
    "package = types.ModuleType('streamer')\n"
    "package.__path__ = [sys.argv[1]]\n"
    "sys.modules['streamer'] = package\n"
    "from streamer.sources.decode_pool import worker_main\n"
    "worker_main(int(sys.argv[2]))\n"
)


def worker_count(setting: int | str, streams: int, cores: int | None = None) -> int:
    """How many decode workers to start for `streams` poolable streams.

    `auto` keeps decode in this process while there are at most half as many streams as cores
    (each decode thread then has a core and the lock is far from busy); beyond that it starts
    a worker per four streams, at most one per two cores. A number is taken as given, but never
    more workers than streams.
    """
    cores = cores or os.cpu_count() or 1
    if setting == "auto":
        if streams <= max(1, cores // 2):
            return 0
        return max(1, min(cores // 2, math.ceil(streams / 4)))
    return min(int(setting), streams)


@contextlib.asynccontextmanager
async def decoding(
    sources: Sequence[Any], plan: DecodePlan, workers: int | str
) -> AsyncIterator[DecodePool | None]:
    """Give every source the run's decode plan, and decode workers when asked for.

    Files and network streams go to the workers; cameras stay in this process (a capture
    device belongs to one process). Yields the pool (None without workers) and stops it after.
    """
    poolable = [s for s in sources if isinstance(s, FileSource | NetworkSource)]
    for source in sources:
        source.plan = plan
    count = worker_count(workers, len(poolable))
    if count == 0:
        yield None
        return
    pool = DecodePool(count)
    await pool.start()
    try:
        for source in poolable:
            if source.live and not plan.full_frames:
                # The pipeline may analyse a frame the worker did not expect (one dropped on the
                # way); a worker's frame cannot be converted later, so each gets its small copy.
                source.plan = replace(plan, analysis_every_frame=True)
            source.pool = pool
        log.info("decoding %d streams in %d worker processes", len(poolable), count)
        yield pool
    finally:
        for source in poolable:
            source.pool = None
        await pool.close()


# ---------------------------------------------------------------------------------------------
# The pipeline's side


class DecodePool:
    """Worker processes that decode streams for this process.

    Args:
        workers: how many processes to start.

    Use `await start()`, then `await run(source, out, stop)` once per stream (it stands in for
    `source.run`), then `await close()`.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise errors.ConfigError(f"a decode pool needs at least one worker, got {workers}")
        self.size = workers
        self.prefix = f"streamer-{os.getpid()}-{secrets.token_hex(4)}-"
        self._workers: list[_WorkerHandle] = []
        self._next_id = 0

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [worker.process.pid for worker in self._workers]

    async def start(self) -> None:
        """Start the workers and wait until each is ready.

        Raises:
            SourceError: a worker did not start (its error is on stderr).
        """
        loop = asyncio.get_running_loop()
        try:
            for number in range(self.size):
                self._workers.append(_WorkerHandle(number, self.prefix, loop))
            await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in self._workers))
        except BaseException:
            await self.close()
            raise

    async def run(self, source: FileSource | NetworkSource, out: Channel[Frame],
                  stop: asyncio.Event) -> None:  # fmt: skip
        """Decode `source` in a worker into `out` until it ends, fails or `stop` is set; close
        `out`. The source's own attributes (`status`, `info`, `incomplete`, …) follow the
        worker's copy of it."""
        worker = min(self._workers, key=lambda w: (not w.alive, len(w.lanes)))
        self._next_id += 1
        lane = _Lane(self._next_id, source, out, worker, asyncio.get_running_loop())
        try:
            await lane.run(stop)
        finally:
            out.close_nowait()
            lane.close()

    async def close(self) -> None:
        """Stop every worker (killing one that does not leave) and remove every segment."""
        workers, self._workers = self._workers, []
        try:
            await asyncio.to_thread(_shut_down, workers, QUIT_GRACE_S)
        except BaseException:  # cancelled (a second Ctrl-C): no more waiting
            _shut_down(workers, 0.0)
            raise
        finally:
            _sweep(self.prefix)


def _shut_down(workers: list[_WorkerHandle], grace: float) -> None:
    for worker in workers:
        worker.quit()
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.reap(max(0.0, deadline - time.monotonic()))


def _sweep(prefix: str) -> None:
    """Remove any segment of this pool still there (normally none: each lane unlinks its own)."""
    if SHM_FOLDER.is_dir():
        for leftover in SHM_FOLDER.glob(f"{prefix}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()


class _WorkerHandle:
    """One worker process, seen from the pipeline: its socket, its receiver thread, its lanes."""

    def __init__(self, number: int, prefix: str, loop: asyncio.AbstractEventLoop) -> None:
        self.number = number
        self.prefix = prefix
        self.loop = loop
        self.lanes: dict[int, _Lane] = {}
        self.alive = True
        self.exit_code: int | None = None
        self._ready = threading.Event()
        self._send_lock = threading.Lock()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self.process = subprocess.Popen(
                # -P: the current folder is not put on the path (it could shadow a module).
                [sys.executable, "-P", "-c", _BOOTSTRAP, str(_PACKAGE), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C goes to the pipeline, which stops the workers
            )
            self.conn = Connection(os.dup(ours.fileno()))
        self._receiver = threading.Thread(
            target=self._receive, name=f"decode-worker-{number}", daemon=True
        )
        self._receiver.start()

    def wait_ready(self) -> None:
        if not self._ready.wait(START_TIMEOUT_S) or not self.alive:
            self.process.kill()
            raise SourceError(
                f"decode worker {self.number} did not start (exit code {self.process.poll()}); "
                "its error is printed above. Fix: run with --decode-workers 0 to decode in "
                "this process."
            )

    def send(self, message: tuple) -> bool:
        """Send a message; False when the worker is gone."""
        with self._send_lock:
            try:
                self.conn.send(message)
            except (OSError, ValueError):  # broken pipe, or the connection is closed
                return False
        return True

    def _receive(self) -> None:
        """The receiver thread: every message of the worker, in order, until it is gone."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            try:
                self._handle(message)
            except Exception:  # a bug here must not leave the streams waiting forever
                log.exception("decode worker %d: a message could not be handled", self.number)
                self.process.kill()  # out of step with this side: its streams fail below
                break
        self.alive = False
        self._ready.set()
        self.exit_code = _wait_quietly(self.process, 5.0)
        for lane in list(self.lanes.values()):
            lane.post(("died", self.exit_code))

    def _handle(self, message: tuple) -> None:
        kind = message[0]
        if kind == "log":
            _, level, name, text = message
            logging.getLogger(name).log(level, "%s", text)
        elif kind == "ready":
            self._ready.set()
        else:
            lane = self.lanes.get(message[1])
            if lane is not None:
                lane.receive(message)

    def quit(self) -> None:
        self.send(("quit",))

    def reap(self, timeout: float) -> None:
        """Wait for the process to leave, kill it when it does not, and close the socket."""
        if _wait_quietly(self.process, timeout) is None:
            self.process.kill()
            _wait_quietly(self.process, 5.0)
        with contextlib.suppress(OSError):
            self.conn.close()
        self._receiver.join(timeout=5.0)


def _wait_quietly(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


class _Lane:
    """One pooled stream on the pipeline's side: its segment, its events, its delivery."""

    def __init__(
        self,
        lane_id: int,
        source: FileSource | NetworkSource,
        out: Channel[Frame],
        worker: _WorkerHandle,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.id = lane_id
        self.source = source
        self.out = out
        self.worker = worker
        self.loop = loop
        self.events: asyncio.Queue[tuple] = asyncio.Queue()
        # The receiver thread reads and replaces segments, the loop removes them at the end.
        self._segment_lock = threading.Lock()
        self.segment: SharedMemory | None = None
        self.segments: list[SharedMemory] = []
        self.generation = 0
        self.worker_dropped = 0
        self.delivered = 0
        self.closed = False
        self.last_pts: float | None = None

    # -- receiver thread -----------------------------------------------------------------------

    def receive(self, message: tuple) -> None:
        """A message of the worker for this stream (receiver thread)."""
        kind = message[0]
        if kind == "frame":
            _, _, slot, meta = message
            self.post(("frame", self._unpack(meta), slot, meta.dropped))
        elif kind == "need":
            self._new_segment(message[2])
        else:
            self.post(message)

    def post(self, event: tuple) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is long over
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def _unpack(self, meta: _FrameMeta) -> Frame:
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
                self.post(("failed", self.id, f"no shared memory for its frames ({exc})"))
                self.worker.send(("stop", self.id))
                return
            self.segments.append(segment)
            self.segment = segment
        self.worker.send(("ring", self.id, name, slot_bytes))

    def _drop_segments(self) -> None:
        """Unmap and remove this stream's segments (holding `_segment_lock`)."""
        for segment in self.segments:
            with contextlib.suppress(BufferError, OSError):
                segment.close()
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()
        self.segments.clear()
        self.segment = None

    @property
    def slots(self) -> int:
        return LIVE_SLOTS if self.source.live else FILE_SLOTS

    # -- event loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.worker.lanes[self.id] = self
        opened = self.worker.send(("open", self.id, _Spec.of(self.source, self.slots)))
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
        self.worker.send(("stop", self.id))
        await asyncio.sleep(STOP_GRACE_S)
        log.warning("%s: the decode worker did not confirm the stop; going on", self.source.name)
        self.events.put_nowait(("gone",))

    async def _handle(self, event: tuple) -> bool:
        """Act on one event; True when the stream is over."""
        kind = event[0]
        if kind == "frame":
            _, frame, slot, dropped = event
            await self._deliver(frame, dropped)
            self.worker.send(("free", self.id, slot))
            return False
        if kind == "status":
            _apply_status(self.source, event[2])
            return False
        if kind == "end":
            _apply_end(self.source, event[2])
            return True
        if kind == "failed":
            self._fail(event[2])
            return True
        if kind == "died":
            self._died(event[1])
            return True
        return kind == "gone"

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
            self.worker.send(("stop", self.id))
            return
        self.delivered += 1
        self.last_pts = frame.pts
        if isinstance(self.source, NetworkSource):
            self.source.status.frames += 1

    def _fail(self, message: str) -> None:
        """The worker reported an error it did not expect while running this stream."""
        self._report_failure(f"{self.source.name}: decoding failed in the worker: {message}")

    def _died(self, exit_code: int | None) -> None:
        code = "" if exit_code is None else f" (exit code {exit_code})"
        self._report_failure(
            f"{self.source.name}: its decode worker process died{code} after "
            f"{self.delivered} frames"
        )

    def _report_failure(self, message: str) -> None:
        source = self.source
        if isinstance(source, FileSource):
            source.incomplete = SourceDecodeError(message, frames=self.delivered, pts=self.last_pts)
            source.frames_read = self.delivered
            source.ended = True
            log.error("%s", source.incomplete)
            return
        source.error = SourceError(message)
        source.status.state = "failed"
        source.status.last_error = message
        log.error("%s", message)

    def close(self) -> None:
        self.worker.lanes.pop(self.id, None)
        self.worker.send(("close", self.id))
        with self._segment_lock:
            self.closed = True
            self._drop_segments()


def _apply_status(source: NetworkSource, report: dict) -> None:
    """A live source's state, as its copy in the worker has it (`damaged` too: the worker's
    decoder counts it; but `frames`: counted here, as frames reach the pipeline)."""
    for field, value in report["status"].items():
        if field != "frames":
            setattr(source.status, field, value)
    source.info = report["info"]
    if report["error"] is not None:
        source.error = _rebuild_error(*report["error"])


def _apply_end(source: FileSource | NetworkSource, report: dict) -> None:
    if isinstance(source, FileSource):
        source.frames_read = report["frames_read"]
        source.corrupt_packets = report["corrupt_packets"]
        source.ended = report["ended"]
        if report["incomplete"] is not None:
            message, frames, pts = report["incomplete"]
            source.incomplete = SourceDecodeError(message, frames=frames, pts=pts)
        return
    _apply_status(source, report)


def _rebuild_error(type_name: str, message: str) -> SourceError:
    """A source error sent as (class name, message); exceptions do not travel as objects."""
    cls = getattr(errors, type_name, SourceError)
    if not (isinstance(cls, type) and issubclass(cls, SourceError)) or cls is SourceDecodeError:
        cls = SourceError
    return cls(message)


# ---------------------------------------------------------------------------------------------
# What travels between the two sides


@dataclass(frozen=True, slots=True)
class _Spec:
    """How the worker re-creates a source: what it is, and the run's settings for it."""

    kind: str  # "file" or "network"
    spec: str  # the path or the URL (with its credentials: it goes over a private socket)
    name: str
    live: bool
    paced: bool
    options: SourceOptions
    plan: DecodePlan
    slots: int

    @classmethod
    def of(cls, source: FileSource | NetworkSource, slots: int) -> _Spec:
        if isinstance(source, FileSource):
            kind, spec = "file", source.path
            options, paced = SourceOptions(), source.paced
        else:
            kind, spec = "network", source.url
            options, paced = source.options, False
        return cls(kind, spec, source.name, source.live, paced, options, source.plan, slots)


@dataclass(frozen=True, slots=True)
class _FrameMeta:
    """A frame's record without its pixels, which are in a slot: (kind, offset, shape) each."""

    index: int
    pts: float
    captured: float
    pts_raw: int | None
    time_base: Any
    pictures: tuple[tuple[str, int, tuple[int, ...]], ...]
    dropped: int  # frames the worker dropped so far (live), in total


# ---------------------------------------------------------------------------------------------
# The worker's side


def worker_main(fd: int) -> None:
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
                self.conn.send(("log", record.levelno, record.name, text))
        except Exception:  # the pipeline is gone: nowhere to log to
            self.handleError(record)


# The worker's sends come from its loop and from decode threads (log records); reentrant, so
# a record logged while a message is being sent cannot deadlock.
_send_lock = threading.RLock()


class _Worker:
    """The worker's event loop: one task per stream it decodes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.streams: dict[int, _WorkerStream] = {}
        self.tasks: set[asyncio.Task] = set()
        self.quit = asyncio.Event()

    def send(self, message: tuple) -> None:
        """Send to the pipeline; when it is gone, the command reader sees that and quits."""
        with _send_lock, contextlib.suppress(OSError, ValueError):
            self.conn.send(message)

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.send(("ready", os.getpid()))
        threading.Thread(target=self._read, name="commands", daemon=True).start()
        await self.quit.wait()
        for stream in self.streams.values():
            stream.stop.set()
        if self.tasks:  # a stream waiting for a slot never sees its stop: it is cancelled after
            await asyncio.wait(self.tasks, timeout=1.0)

    def _read(self) -> None:
        """Commands from the pipeline, onto the loop; a closed socket means quit."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = ("quit",)
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self.loop.call_soon_threadsafe(self._dispatch, message)
            if message[0] == "quit":
                return

    def _dispatch(self, message: tuple) -> None:
        kind = message[0]
        if kind == "quit":
            self.quit.set()
            return
        if kind == "open":
            stream = _WorkerStream(message[1], message[2], self)
            self.streams[stream.id] = stream
            task = stream.task = asyncio.ensure_future(stream.run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        stream = self.streams.get(message[1])
        if stream is None:
            return
        if kind == "ring":
            stream.attach(message[2], message[3])
        elif kind == "free":
            stream.free(message[2])
        elif kind == "stop":
            stream.stop.set()
        elif kind == "close":  # the pipeline is done with it, whatever state it is in
            stream.stop.set()
            if stream.task is not None:
                stream.task.cancel()
            self.streams.pop(stream.id, None)


class _WorkerStream:
    """One stream in the worker: the real source, decoding into a channel that this task
    empties into the stream's shared-memory slots."""

    def __init__(self, stream_id: int, spec: _Spec, worker: _Worker) -> None:
        self.id = stream_id
        self.spec = spec
        self.worker = worker
        self.stop = asyncio.Event()
        self.free_slots = list(range(spec.slots))
        self.slot_freed = asyncio.Event()
        self.segment: SharedMemory | None = None
        self.slot_bytes = 0
        self.ring_ready: asyncio.Future[None] | None = None
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        try:
            source = self._open()
            await self._pump(source)
        except Exception as exc:  # reported to the pipeline, which fails the stream
            logging.getLogger("streamer.sources").debug("worker stream failed", exc_info=True)
            self.worker.send(("failed", self.id, f"{type(exc).__name__}: {exc}"))
        finally:
            self.detach()

    def _open(self) -> FileSource | NetworkSource:
        spec = self.spec
        if spec.kind == "file":
            source: FileSource | NetworkSource = FileSource(spec.spec, spec.name)
            source.live, source.paced = spec.live, spec.paced
        else:
            source = NetworkSource(spec.spec, spec.name, live=spec.live, options=spec.options)
        source.plan = spec.plan
        return source

    async def _pump(self, source: FileSource | NetworkSource) -> None:
        policy = DropPolicy.DROP_OLDEST if self.spec.live else DropPolicy.BLOCK
        # Live: room for a connection's first burst (the frames FFmpeg decoded while probing
        # arrive at once) while the first segment is set up; empty again right after.
        capacity = LIVE_BURST if self.spec.live else 2
        channel: Channel[Frame] = Channel(capacity, policy, name=f"{self.spec.name}/worker")
        running = asyncio.ensure_future(source.run(channel, self.stop))
        reporting = asyncio.ensure_future(self._report_status(source))
        try:
            async for frame in channel:
                await self._send_frame(frame, channel.dropped)
            await running
        finally:
            reporting.cancel()
            running.cancel()
        self.worker.send(("end", self.id, _end_report(source)))

    async def _report_status(self, source: FileSource | NetworkSource) -> None:
        """A live source's state whenever it changes (checked ten times a second)."""
        if not isinstance(source, NetworkSource):
            return
        last = None
        while True:
            report = _status_report(source)
            if report != last:
                self.worker.send(("status", self.id, report))
                last = report
            await asyncio.sleep(0.1)

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
        meta = _FrameMeta(
            frame.index, frame.pts, frame.captured, frame.pts_raw, frame.time_base,
            tuple(placed), dropped,
        )  # fmt: skip
        self.worker.send(("frame", self.id, slot, meta))

    async def _slot(self, needed: int) -> int:
        """A free slot of at least `needed` bytes, asking for a (bigger) segment when needed."""
        if needed > self.slot_bytes:
            while len(self.free_slots) < self.spec.slots:  # the old segment must be read out
                await self._slot_freed()
            self.detach()
            self.ring_ready = asyncio.get_running_loop().create_future()
            # Room for a little growth, so a stream that changes size by a few pixels does not
            # need a new segment every time.
            self.worker.send(("need", self.id, needed + needed // 8))
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


def _status_report(source: NetworkSource) -> dict:
    error = source.error
    return {
        "status": asdict(source.status),
        "info": source.info,
        "error": None if error is None else (type(error).__name__, str(error)),
    }


def _end_report(source: FileSource | NetworkSource) -> dict:
    if isinstance(source, NetworkSource):
        return _status_report(source)
    incomplete = source.incomplete
    return {
        "frames_read": source.frames_read,
        "corrupt_packets": source.corrupt_packets,
        "ended": source.ended,
        "incomplete": None
        if incomplete is None
        else (str(incomplete), incomplete.frames, incomplete.pts),
    }
