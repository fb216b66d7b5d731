"""`run_cluster`: the same run as `run_pipeline`, spread over a Ray cluster.

::

    driver (this process)                      node 1                      node 2
      connect, name the streams         ┌──── shard: streams/files ──┐  ┌── shard ...
      start the pool and the shards ────┤       decode, sample,      │  │
      hand out work (jobs.py):          │       overlay, outputs     │  │
        live streams → a shard each     │             │ 224×224 uint8│  │
        files → a queue over the shards └─────────────┼──────────────┘  └──
      restart what a lost node had                    ▼
      merge the summaries                  encoder replicas (pool.py), batching across shards

A node lost: its live streams start again on another node (a pinned one waits for its node),
its unfinished files are redone from the start elsewhere (their outputs rewritten); finished
ones are kept. An encoder replica lost: Ray restarts it where resources allow (`pool.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from streamer import control as one_process  # REMOVE_TIMEOUT_S, read when used
from streamer.archive.observer import ArchiveObserver
from streamer.cluster.control import ClusterControl
from streamer.cluster.coordinator import Coordinator, RemoteRun, RemoteStream
from streamer.cluster.jobs import Job, Plan, merge_summaries, plan_run
from streamer.cluster.options import ClusterConfig
from streamer.cluster.placement import Placement
from streamer.cluster.session import ClusterInfo, connect, disconnect
from streamer.config import RunConfig
from streamer.core import startup
from streamer.errors import ActorLostError, ClusterError, StreamerError
from streamer.report import Reporter, RunSummary, stopped_before_start
from streamer.run_setup import check_stop, observers_from_config
from streamer.watch.mqtt import MqttPublisher

__all__ = ["run_cluster"]

log = logging.getLogger("streamer")

STOP_GRACE_S = 30.0  # how long stopped shards get to finish their outputs


async def run_cluster(
    config: RunConfig, *, stop: asyncio.Event | None = None, progress: bool = False
) -> RunSummary:
    """Run every input of `config` on the Ray cluster `config.cluster` names.

    Args:
        config: the run; `config.cluster` says where and how (`ClusterConfig`).
        stop: set it to end early; every shard finishes its outputs with what it wrote.
        progress: log each finished file and the cluster's state now and then.

    Returns:
        What happened, every stream of every node in input order.

    Raises:
        ClusterUnavailableError: the cluster cannot be reached (before any work).
        ConfigError, SourceError: as `run_pipeline`, before any work (a `stop` that is not an
            `asyncio.Event` included).
        ClusterError: the pool or the shards could not be started, or failed for good.
    """
    check_stop(stop)
    if config.cluster is None:
        raise ClusterError("run_cluster needs config.cluster (ClusterConfig(address='auto'))")
    plan = plan_run(config)  # every check that needs no cluster first
    with startup.phase("cluster join"):
        info = await asyncio.to_thread(connect, config.cluster)
    try:
        log.info("%s", info.describe())
        run = _ClusterRun(config, config.cluster, plan, info, stop or asyncio.Event(), progress)
        return await run.run()
    finally:
        await asyncio.to_thread(disconnect)


class _ClusterRun:
    """The driver's side of one cluster run: jobs out, summaries back, faults handled."""

    def __init__(
        self, config: RunConfig, cluster: ClusterConfig, plan: Plan, info: ClusterInfo,
        stop: asyncio.Event, progress: bool,
    ) -> None:  # fmt: skip
        self.config = config
        self.plan = plan
        self.stop = stop
        self.progress = progress
        self.placement = Placement(config, cluster, info)
        self.running: dict[asyncio.Task, Job] = {}
        self.refs: dict[asyncio.Task, Any] = {}  # each running job's Ray call (to cancel it)
        self.waiting_live: list[Job] = list(plan.live)  # not started yet, or lost
        self.queued: list[Job] = list(plan.files)
        self.removed: set[str] = set()  # jobs the stream API is removing
        self.told_no_node: set[str] = set()  # pinned streams said to wait for their node
        self.emptied = False  # the API removed the last stream: wait for the next one
        self.done: dict[str, Any] = {}  # job key → its summary (a redone file: the last one)
        self.started = time.monotonic()
        self.stopping = False  # the shards were told to stop
        self._stop_seen: asyncio.Task | None = None  # ends when `stop` is set
        self.coordinator: Coordinator | None = None  # made once the pool's model is known

    async def run(self) -> RunSummary:
        try:
            if not await self._started():
                return stopped_before_start(time.monotonic() - self.started)
            await self._coordinated()
        finally:
            if self._stop_seen is not None:
                self._stop_seen.cancel()
            await self._stop_all()
            await self.placement.close()
        return merge_summaries(
            self.plan, self.done, time.monotonic() - self.started,
            stopped=self.stop.is_set(), random_weights=self.placement.model.random_weights,
        )  # fmt: skip

    async def _started(self) -> bool:
        """Start the pool and the shards; False when `stop` came first (Ctrl-C while the
        replicas load or wait for free CPUs: the run stops at once, as one process's does)."""
        starting = asyncio.ensure_future(self._start_placement())
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StreamerError):
                await starting
            return False
        starting.result()
        return True

    async def _start_placement(self) -> None:
        with startup.phase("replicas and shards"):  # the model loads on every replica
            await self.placement.start(live=bool(self.plan.live))

    async def _coordinated(self) -> None:
        """The schedule, with the coordinator reading the shards beside it."""
        streams = [
            RemoteStream(job.key, job.live, job.connects, job.path) for job in self.plan.jobs
        ]
        run = RemoteRun(self.config, streams, self.placement.model, self.stop)
        observers = observers_from_config(self.config)  # viewer, webhook, the archive's index
        run.archive = next((o for o in observers if isinstance(o, ArchiveObserver)), None)
        run.mqtt = next((o for o in observers if isinstance(o, MqttPublisher)), None)
        placement = self.placement
        self.coordinator = Coordinator(run, observers, placement.desk, placement.desk_view)
        if self.config.serve is not None:  # the viewer's stream API changes the run's streams
            run.control = ClusterControl(self, self.coordinator)
        await self.coordinator.start()
        reporter = (
            Reporter(streams, self.config.status_every, run.archive, run.mqtt)
            if self.progress
            else None
        )
        finished = asyncio.Event()
        reading = asyncio.get_running_loop().create_task(
            self.coordinator.keep_reading(lambda: self.placement.shards, reporter, finished)
        )
        try:
            await self._schedule()
        finally:
            finished.set()  # the read in progress is taken in whole
            try:
                await asyncio.wait_for(asyncio.shield(reading), STOP_GRACE_S)
            except TimeoutError:
                reading.cancel()
            except asyncio.CancelledError:
                reading.cancel()
                raise
            await self._stop_all()
            await self.coordinator.read(self.placement.shards)  # the last events of each run
            if reporter is not None:
                reporter.tick(final=True)
            await self.coordinator.stop()

    async def _schedule(self) -> None:
        """Hand out jobs until every one has finished (or the run is stopped); a run the
        stream API emptied waits for the next stream."""
        next_look = 0.0
        while True:
            if time.monotonic() >= next_look:  # nodes come and go
                await self.placement.refresh()
                next_look = time.monotonic() + 1.0
            if not self.stop.is_set():
                self.waiting_live = self._start_live(self.waiting_live)
                self.queued = self._start_files(self.queued)
            waiting = self.queued or self.waiting_live or self.emptied
            if not self.running and (self.stop.is_set() or not waiting):
                return
            await self._wait_some()
            for job in self._collect():
                if job.live:
                    self.waiting_live.append(job)
                else:
                    self.queued.insert(0, job)  # a lost file goes first: redone from the start

    # -- the stream API's side (`streamer.cluster.control`) --------------------------------------

    def jobs(self) -> list[Job]:
        """Every job of the run now, running or waiting, in the run's order."""
        current = {job.key: job for job in (*self.running.values(), *self.waiting_live,
                                            *self.queued)}  # fmt: skip
        return [current[key] for key in self.plan.order if key in current]

    def add_job(self, job: Job) -> None:
        """A stream added while the run runs: it starts at the next look (within a second)."""
        self.plan = self.plan.with_job(job)
        (self.waiting_live if job.live else self.queued).append(job)
        self.emptied = False

    async def remove_job(self, key: str) -> tuple[Any, bool]:
        """Stop job `key` (its shard finishes its outputs) and forget it.

        Its shard gets `REMOVE_TIMEOUT_S` (as a stream removed in one process): past it (a
        source, analysis or caption that does not answer its stop) its run there is
        cancelled, and its files end as they are.

        Returns:
            Its summary (None when it had not started, or was cancelled) and whether it was
            cancelled.
        """
        self.removed.add(key)
        self.plan = self.plan.without(key)
        self.waiting_live = [job for job in self.waiting_live if job.key != key]
        self.queued = [job for job in self.queued if job.key != key]
        task = next((t for t, job in self.running.items() if job.key == key), None)
        summary, cut = None, False
        if task is not None:
            self.running[task].shard.handle.stop_job.remote(key)
            done, _ = await asyncio.wait([task], timeout=one_process.REMOVE_TIMEOUT_S)
            if not done:
                cut = True
                _cancel(self.refs.get(task))  # its run on the shard: cancelled there
                task.cancel()
                await asyncio.wait([task])
            summary = task.result() if not task.cancelled() and not task.exception() else None
        self.emptied = not (self.plan.order or self.stop.is_set())
        return summary, cut

    def _start_live(self, waiting: list[Job]) -> list[Job]:
        """Start each waiting live job where it may run now; the rest keep waiting."""
        still = []
        for job in waiting:
            shard = self.placement.shard_for(job)
            if shard is None:
                still.append(job)
                self._tell_no_node(job)
                continue
            self._launch(job, shard)
        return still

    def _tell_no_node(self, job: Job) -> None:
        """Warn once that a pinned stream waits for a node the cluster does not have (after a
        loss, the loss's warning has said so)."""
        if job.pin is None or job.attempt > 1 or job.key in self.told_no_node:
            return
        if not self.placement.has_node_for(job):
            self.told_no_node.add(job.key)
            log.warning("stream %s waits: no node of the cluster may run it (--pin %s); it "
                        "starts once %s joins", job.key, job.pin, job.pin.wanted())  # fmt: skip

    def _start_files(self, files: list[Job]) -> list[Job]:
        """Give queued files to shards with room, least busy first."""
        while files:
            shard = self.placement.shard_with_room()
            if shard is None:
                break
            self._launch(files.pop(0), shard)
        return files

    def _launch(self, job: Job, shard: Any) -> None:
        restarted = job.live and job.attempt > 1  # a file is redone from its start
        startup.mark("first job sent")
        ref = shard.handle.run.remote(job.config, job.key, restarted)
        task = asyncio.get_running_loop().create_task(_result(ref))
        self.refs[task] = ref
        shard.jobs[job.key] = job.live
        job.shard = shard
        self.running[task] = job
        where = f"{shard.name} on {shard.host}"
        log.log(logging.INFO if job.live or self.progress else logging.DEBUG,
                "%s → %s", job.describe(), where)  # fmt: skip

    async def _wait_some(self) -> None:
        """Until a job ends, the run is told to stop, or a second passes (to look at nodes)."""
        if self._stop_seen is None:
            self._stop_seen = asyncio.get_running_loop().create_task(self.stop.wait())
        waits: set[asyncio.Future] = {*self.running, self._stop_seen}
        await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        if self.stop.is_set() and not self.stopping:
            self.stopping = True
            await self.placement.stop_shards()

    def _collect(self) -> list[Job]:
        """Take in the jobs that ended; returns those to run again (their node was lost)."""
        again = []
        for task in [t for t in self.running if t.done()]:
            job = self.running.pop(task)
            self.refs.pop(task, None)
            self.placement.job_ended(job.shard, job)
            if job.key in self.removed:  # the stream API took it out: `remove_job` answers
                self.removed.discard(job.key)
                continue
            exc = task.exception()
            if exc is None:
                self.done[job.key] = task.result()
                if self.progress and not job.live:
                    log.info("%s done (%d/%d files)", job.describe(), self._files_done(),
                             len(self.plan.files))  # fmt: skip
            elif isinstance(exc, ActorLostError):
                self.placement.lost(job.shard)
                self.coordinator.lost(job.key)
                log.warning(
                    "%s: %s lost (%s); %s",
                    job.describe(),
                    job.shard.name,
                    exc,
                    job.after_loss(),
                )
                again.append(job.retry())
            else:
                raise exc
        return again

    def _files_done(self) -> int:
        return sum(1 for job in self.plan.files if job.key in self.done)

    async def _stop_all(self) -> None:
        """Stop every running job and wait (bounded) for their outputs to finish."""
        if not self.running:
            return
        if not self.stopping:
            self.stopping = True
            await self.placement.stop_shards()
        done, pending = await asyncio.wait(set(self.running), timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()
        for task in done:
            job = self.running.pop(task)
            if task.exception() is None:
                self.done[job.key] = task.result()


def _cancel(ref: Any) -> None:
    """Cancel a job's Ray call: its shard is an async actor, so its run gets CancelledError
    (and finishes its outputs as a cancelled run does)."""
    if ref is None:
        return
    import ray

    try:
        ray.cancel(ref)
    except Exception as exc:  # the shard is gone already: nothing left to cancel
        log.debug("cancelling a job's run on its shard: %s", exc)


async def _result(ref: Any) -> Any:
    """A job's summary; its shard's loss as `ActorLostError`; a pipeline error as itself."""
    from ray.exceptions import RayActorError, RayTaskError

    try:
        return await ref
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, StreamerError):
            raise cause from None
        raise
    except RayActorError as exc:
        raise ActorLostError(type(exc).__name__) from None
