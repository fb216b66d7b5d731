"""The pipeline's side of the decode pool: who runs each source (`decoding`, `SourceRunner`),
the worker processes (`DecodePool`) and their handles.

A worker is started as `python -c BOOTSTRAP`: it imports only `streamer.sources` (PyAV, OpenCV,
numpy), never the encoders or torch (`streamer/__init__` loads those lazily, on first use), so
it is ready in a fraction of a second. It ignores Ctrl-C (`start_new_session`: the terminal's
signal goes to the pipeline, which stops the workers), and leaves when its socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

from streamer.core.channel import Channel
from streamer.core.frame import Frame
from streamer.errors import ConfigError, SourceError
from streamer.sources.base import Source, WorkerSpec
from streamer.sources.options import DecodePlan
from streamer.sources.pool.lane import Lane
from streamer.sources.pool.wire import (
    FromWorker,
    Log,
    Quit,
    Ready,
    ToWorker,
    from_worker,
)
from streamer.sources.tap import PacketTap

__all__ = ["SHM_FOLDER", "DecodePool", "SourceRunner", "decoding", "worker_count"]

log = logging.getLogger("streamer.sources")

START_TIMEOUT_S = 30.0  # a worker that has not said it is ready by then is broken
QUIT_GRACE_S = 3.0  # at shutdown, how long a worker may take to leave before it is killed
SHM_FOLDER = Path("/dev/shm")  # where Linux keeps POSIX shared memory (for the final sweep)

# The folder that holds the `streamer` package: a worker imports the same code as this process.
_ROOT = Path(__file__).resolve().parents[3]
# Serve on the socket whose descriptor is argv[2]. `-P` keeps the current folder off the path
# (it could shadow a module); the package's own folder goes first instead.
_BOOTSTRAP = (
    "import sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from streamer.sources.pool.worker import main\n"
    "main(int(sys.argv[2]))\n"
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


class SourceRunner:
    """Runs each source of a run where `decoding` decided: in a thread of this process, or in
    a decode worker process.

    Args:
        plan: what the run needs from its decoders.
        pool: the decode workers, None to run every source in this process.
        pooled: the sources that run in `pool`, each with how a worker re-creates it.
    """

    def __init__(
        self,
        plan: DecodePlan,
        pool: DecodePool | None = None,
        pooled: dict[Source, WorkerSpec] | None = None,
    ) -> None:
        self.plan = plan
        self.pool = pool
        self._pooled = dict(pooled or {})

    def in_worker(self, source: Source) -> bool:
        """Whether `source` runs in a decode worker."""
        return self.pool is not None and source in self._pooled

    def plan_for(self, source: Source) -> DecodePlan:
        """The plan `source` runs with. A live stream in a worker that draws nothing gets the
        analysis-size picture of every frame: the pipeline may analyse a frame the worker did
        not expect (one dropped on the way), and a worker's frame cannot be converted later."""
        if self.in_worker(source) and source.live and not self.plan.full_frames:
            return replace(self.plan, analysis_every_frame=True)
        return self.plan

    async def run(
        self,
        source: Source,
        out: Channel[Frame],
        stop: asyncio.Event,
        tap: PacketTap | None = None,
    ) -> None:
        """Run `source` into `out` until it ends or `stop` is set; `out` is closed after.
        `tap`: where a `tappable` source also hands its packets, wherever it runs (in a
        decode worker, a copy of the tap records there and `tap` follows its state)."""
        plan = self.plan_for(source)
        spec = self._pooled.get(source)
        if self.pool is None or spec is None:
            if tap is None:
                await source.run(out, stop, plan)
            else:
                await source.run(out, stop, plan, tap)
            return
        if tap is not None and not source.tappable:  # refused here as it would be there
            raise ConfigError(f"{source.name}: this source has no packets to record")
        await self.pool.run(source, spec, plan, out, stop, tap)


@contextlib.asynccontextmanager
async def decoding(
    sources: Sequence[Source], plan: DecodePlan, workers: int | str
) -> AsyncIterator[SourceRunner]:
    """Decide who runs each source of a run, and start decode workers when that is them.

    Files and network streams go to the workers; cameras stay in this process (a capture
    device belongs to one process). Yields the runner; stops the workers after.

    Args:
        sources: every source of the run.
        plan: what the run needs from its decoders.
        workers: `--decode-workers`: a number, or "auto" (see `worker_count`).
    """
    specs = {source: source.worker_spec() for source in sources}
    pooled = {source: spec for source, spec in specs.items() if spec is not None}
    count = worker_count(workers, len(pooled))
    if count == 0:
        yield SourceRunner(plan)
        return
    pool = DecodePool(count)
    await pool.start()
    try:
        log.info("decoding %d streams in %d worker processes", len(pooled), count)
        yield SourceRunner(plan, pool, pooled)
    finally:
        await pool.close()


class DecodePool:
    """Worker processes that decode streams for this process.

    Args:
        workers: how many processes to start.

    Use `await start()`, then `await run(...)` once per stream (a `SourceRunner` does), then
    `await close()`.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ConfigError(f"a decode pool needs at least one worker, got {workers}")
        self.size = workers
        self.prefix = f"streamer-{os.getpid()}-{secrets.token_hex(4)}-"
        self._workers: list[WorkerHandle] = []
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
                self._workers.append(WorkerHandle(number, self.prefix, loop))
            await asyncio.gather(*(asyncio.to_thread(w.wait_ready) for w in self._workers))
        except BaseException:
            await self.close()
            raise

    async def run(
        self,
        source: Source,
        spec: WorkerSpec,
        plan: DecodePlan,
        out: Channel[Frame],
        stop: asyncio.Event,
        tap: PacketTap | None = None,
    ) -> None:
        """Decode `source` (re-created in a worker from `spec`) into `out` until it ends, fails
        or `stop` is set; close `out`. `source` follows the worker's copy of it (`status`,
        `info`, `incomplete`, …), and `tap` its copy's state."""
        worker = min(self._workers, key=lambda w: (not w.alive, len(w.lanes)))
        self._next_id += 1
        lane = Lane(self._next_id, source, out, worker, asyncio.get_running_loop())
        try:
            await lane.run(spec, plan, stop, tap)
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


def _shut_down(workers: list[WorkerHandle], grace: float) -> None:
    for worker in workers:
        worker.send(Quit())
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.reap(max(0.0, deadline - time.monotonic()))


def _sweep(prefix: str) -> None:
    """Remove any segment of this pool still there (normally none: each lane unlinks its own)."""
    if SHM_FOLDER.is_dir():
        for leftover in SHM_FOLDER.glob(f"{prefix}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()


class WorkerHandle:
    """One worker process, seen from the pipeline: its socket, its receiver thread, its lanes.

    Attributes:
        lanes: the streams it decodes now, by stream id.
        alive: False once its socket closed (it left or died).
        exit_code: how it ended, once it did.
    """

    def __init__(self, number: int, prefix: str, loop: asyncio.AbstractEventLoop) -> None:
        self.number = number
        self.prefix = prefix
        self.loop = loop
        self.lanes: dict[int, Lane] = {}
        self.alive = True
        self.exit_code: int | None = None
        self._ready = threading.Event()
        self._send_lock = threading.Lock()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOTSTRAP, str(_ROOT), str(theirs.fileno())],
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
        """Block until the worker says it is ready (a thread of the pool's `start`).

        Raises:
            SourceError: it died or did not answer within START_TIMEOUT_S; it is killed.
        """
        if not self._ready.wait(START_TIMEOUT_S) or not self.alive:
            self.process.kill()
            raise SourceError(
                f"decode worker {self.number} did not start (exit code {self.process.poll()}); "
                "its error is printed above. Fix: run with --decode-workers 0 to decode in "
                "this process."
            )

    def send(self, message: ToWorker) -> bool:
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
                self._handle(from_worker(message))
            except Exception:  # a bug here must not leave the streams waiting forever
                log.exception("decode worker %d: a message could not be handled", self.number)
                self.process.kill()  # out of step with this side: its streams fail below
                break
        self.alive = False
        self._ready.set()
        self.exit_code = _wait_quietly(self.process, 5.0)
        for lane in list(self.lanes.values()):
            lane.died(self.exit_code)

    def _handle(self, message: FromWorker) -> None:
        match message:
            case Log(level, name, text):
                logging.getLogger(name).log(level, "%s", text)
            case Ready():
                self._ready.set()
            case _:
                lane = self.lanes.get(message.stream)
                if lane is not None:
                    lane.receive(message)

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
