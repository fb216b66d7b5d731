"""Where things run: the encoder pool's replicas, a shard on every node, a job's shard.

The driver owns every actor it starts here and kills them at the end of the run. Replicas are
spread over the cluster (one GPU each where it has GPUs, else `--encoder-cpus` CPUs) and Ray
restarts a lost one where resources allow. Replicas are named `encoder-RUN-I` in the run's
namespace, so `ray list actors` (and a test, or a tool) can find a run's pool and ask it for its
`stats()`. Shards are pinned to their node and reserve no CPU (decoding is their node's to give;
the CPUs Ray counts are the encoders'); a node that joins during the run gets its shards at the
next look.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from encoders.registry import family
from streamer.analysis.service import ModelCard
from streamer.cluster.desk import DeskView
from streamer.cluster.jobs import Job
from streamer.cluster.options import ClusterConfig
from streamer.cluster.session import ClusterInfo, NodeInfo, nodes
from streamer.config import RunConfig
from streamer.errors import ClusterError

__all__ = ["REPLICA_PREFIX", "Placement", "ShardRef", "replica_name"]

log = logging.getLogger("streamer")

REPLICA_PREFIX = "encoder-"  # a replica's actor name: encoder-RUN-I
LOAD_TIMEOUT_S = 600.0  # a replica loading its model (pretrained weights may be downloaded)
SLOW_LOAD_S = 15.0  # past this, a start says what the replicas may be waiting for
FIRST_SHARDS_S = 60.0  # the first jobs wait this long for every node's shards to answer


@dataclass(eq=False)
class ShardRef:
    """The driver's view of one shard.

    Attributes:
        name: unique in the run; the shard's lane at each replica.
        node: the node it is pinned to.
        handle: the actor.
        jobs: the jobs it runs now: key → whether it is a live stream.
        alive: False once its node (or process) was lost.
        ready: its actor answered once. Jobs go only to ready shards: one started on a node
            that has just died (Ray still lists it until its health checks fail) never
            answers, and a job given to it would be lost a second time.
    """

    name: str
    node: NodeInfo
    handle: Any
    jobs: dict[str, bool] = field(default_factory=dict)
    alive: bool = True
    ready: bool = False

    @property
    def live(self) -> int:
        """Live streams it runs now."""
        return sum(self.jobs.values())

    @property
    def files(self) -> int:
        """Files it works on now."""
        return len(self.jobs) - self.live

    @property
    def host(self) -> str:
        return self.node.host

    @property
    def label(self) -> str:
        """The node as status and `/metrics` name it: its address and the start of its Ray
        node id (several nodes may share an address)."""
        return f"{self.node.host}/{self.node.node_id[:6]}"


class Placement:
    """The run's actors and where each job goes.

    Args:
        config: the run (its encoder and batch policy go to the replicas).
        cluster: `--encoders`, `--encoder-cpus`, `--shards-per-node`, `--in-flight`,
            `--files-per-shard`.
        info: the cluster as `connect` found it.
    """

    def __init__(self, config: RunConfig, cluster: ClusterConfig, info: ClusterInfo) -> None:
        self._config = config
        self._cluster = cluster
        self._info = info
        self._replicas: list[Any] = []
        self._shards: list[ShardRef] = []
        self._started: dict[str, int] = {}  # node id → shards started there (names them)
        self._answers: set[asyncio.Task] = set()  # shards not yet ready
        self.model: ModelCard | None = None
        self.desk: Any = None  # the LLM desk's handle, when the run has an LLM that answered
        self.desk_view: DeskView | None = None
        self.run_id = uuid.uuid4().hex[:8]  # names this run's replicas apart from another run's

    @property
    def replicas(self) -> list[Any]:
        return list(self._replicas)

    async def _cards(self) -> list[ModelCard]:
        """The replicas' model cards, once they have loaded (`LOAD_TIMEOUT_S` at most); past
        `SLOW_LOAD_S` the log says what they may be waiting for."""
        loading = asyncio.ensure_future(asyncio.gather(*(r.card.remote() for r in self._replicas)))
        try:
            done, _ = await asyncio.wait({loading}, timeout=SLOW_LOAD_S)
            if not done:
                log.warning("the encoder replicas are not ready after %.0f s: each waits for a "
                            "free CPU (%d asked: `ray status` shows what is free; another run "
                            "may hold them) or loads a large model; waiting up to %.0f s, "
                            "Ctrl-C stops", SLOW_LOAD_S, len(self._replicas),
                            LOAD_TIMEOUT_S)  # fmt: skip
            return await asyncio.wait_for(asyncio.shield(loading), LOAD_TIMEOUT_S - SLOW_LOAD_S)
        finally:
            loading.cancel()

    @property
    def shards(self) -> list[ShardRef]:
        """The shards that may be given jobs (and read): alive and ready."""
        return [shard for shard in self._shards if shard.alive and shard.ready]

    async def start(self, live: bool) -> None:
        """Start the encoder pool and the LLM desk, wait for their models, then a shard on
        every node (`live`: the run has live streams)."""
        self._start_replicas()
        desk = self._start_desk(live) if self._config.llm is not None else None
        encoder = self._config.encoder
        model = encoder.model or family(encoder.kind).default_model
        log.info("loading %s %s on %d encoder replica(s)", encoder.kind, model,
                 len(self._replicas))  # fmt: skip
        try:
            cards = await self._cards()
        except TimeoutError:
            raise ClusterError(
                f"the encoder replicas did not start within {LOAD_TIMEOUT_S:.0f} s. Fix: check "
                "`ray status` for the resources --encoders asks for"
            ) from None
        except Exception as exc:
            raise ClusterError(f"an encoder replica failed to start: {_reason(exc)}") from None
        self.model = cards[0]
        if desk is not None:
            await self._open_desk(desk)
        await self.refresh()
        if self._answers:  # the first jobs go out at once, to every node's shards
            await asyncio.wait(set(self._answers), timeout=FIRST_SHARDS_S)

    def _start_desk(self, live: bool) -> Any:
        """The LLM desk, on the driver's node (the one that must reach the LLM server is the
        coordinator's; see `streamer.cluster.desk`); anywhere for a Ray Client driver."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from streamer.cluster.desk import LlmDesk

        options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0}
        try:
            here = ray.get_runtime_context().get_node_id()
            # Hard: a soft affinity let Ray put it on another node when replicas held all the
            # driver node's CPUs (seen on a simulated cluster); it needs none.
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(here, soft=False)
        except Exception as exc:  # a Ray Client driver is on no node: anywhere will do
            log.debug("the LLM desk goes anywhere: %s", exc)
        return ray.remote(LlmDesk).options(**options).remote(self._config.llm, live)

    async def _open_desk(self, desk: Any) -> None:
        """Probe the LLM from the desk and log what it found; no LLM for a file-only run
        (the server did not answer): the desk goes, captions come from tags."""
        view, said = await desk.open.remote()
        node = await desk.node.remote()
        host = next((n.host for n in self._info.nodes if n.node_id == node), "?")
        log.info("the LLM desk runs on %s/%s: the one machine that asks the LLM", host, node[:6])
        for level, line in said:
            log.log(level, "%s", line)
        if view is None:
            import ray

            ray.kill(desk, no_restart=True)
            return
        self.desk, self.desk_view = desk, view

    def _start_replicas(self) -> None:
        import ray

        from streamer.cluster.pool import EncoderReplica

        cluster = self._cluster
        device = self._config.encoder.device
        on_gpu = self._info.gpus >= 1 and (device is None or device.startswith("cuda"))
        if on_gpu:
            resources: dict[str, float] = {"num_gpus": 1, "num_cpus": 1}
            threads = None
        else:
            _check_cpus(cluster, self._info)
            resources = {"num_cpus": cluster.encoder_cpus}
            threads = cluster.torch_threads
        actor = ray.remote(EncoderReplica)
        options = dict(resources, max_restarts=-1, max_task_retries=0, scheduling_strategy="SPREAD")
        policy = self._config.analysis.batch
        self._replicas = [
            actor.options(name=replica_name(self.run_id, i), **options).remote(
                self._config.encoder, policy, threads
            )
            for i in range(cluster.encoders)
        ]

    async def refresh(self) -> None:
        """Give every new node its shards; mark the shards of nodes that left as lost."""
        alive = {node.node_id: node for node in await asyncio.to_thread(nodes)}
        for shard in self._shards:
            if shard.alive and shard.node.node_id not in alive:
                self.lost(shard)
        have = {shard.node.node_id for shard in self._shards if shard.alive}
        for node in alive.values():
            if node.node_id not in have:
                self._start_shards(node)

    def _start_shards(self, node: NodeInfo) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from streamer.cluster.shard import Shard

        actor = ray.remote(Shard)
        where = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        for _ in range(self._cluster.shards_per_node):
            number = self._started.get(node.node_id, 0)
            self._started[node.node_id] = number + 1
            name = f"shard-{node.host}-{node.node_id[:6]}-{number}"  # a lane name never reused
            handle = actor.options(num_cpus=0, max_restarts=0, scheduling_strategy=where).remote(
                name, self._replicas, self.model, self._cluster.in_flight, self.desk,
                self.desk_view,
            )  # fmt: skip
            shard = ShardRef(name, node, handle)
            self._shards.append(shard)
            task = asyncio.get_running_loop().create_task(self._answer(shard))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)
            log.debug("%s started", name)

    async def _answer(self, shard: ShardRef) -> None:
        """`shard` is ready once its actor answers; lost if it cannot start."""
        try:
            await shard.handle.node.remote()
        except Exception as exc:
            log.debug("%s did not start: %s", shard.name, type(exc).__name__)
            self.lost(shard)
            return
        shard.ready = shard.alive

    def shard_for(self, job: Job) -> ShardRef | None:
        """The shard for a live job: on its pinned node if it has one, else the one with the
        fewest live streams; None when no such shard is up now."""
        shards = self.shards
        if job.pin is not None:
            shards = [shard for shard in shards if job.pin.matches(shard.node)]
        if not shards:
            return None
        return min(shards, key=lambda s: (s.live, len(s.jobs)))

    def has_node_for(self, job: Job) -> bool:
        """Whether a node of the cluster now may run `job` (its shards ready or starting)."""
        return any(s.alive and (job.pin is None or job.pin.matches(s.node)) for s in self._shards)

    def shard_with_room(self) -> ShardRef | None:
        """The least busy shard running fewer than `--files-per-shard` jobs, None when every
        shard is full."""
        limit = self._cluster.files_per_shard
        room = [s for s in self.shards if s.files < limit]
        return min(room, key=lambda s: len(s.jobs), default=None)

    def job_ended(self, shard: ShardRef, job: Job) -> None:
        shard.jobs.pop(job.key, None)

    def lost(self, shard: ShardRef) -> None:
        """`shard` is gone (its node left, or its process died): nothing more goes to it."""
        if not shard.alive:
            return
        shard.alive = False
        import ray

        ray.kill(shard.handle, no_restart=True)

    async def stop_shards(self) -> None:
        """Tell every shard to stop its runs (each finishes its outputs)."""
        for shard in self.shards:
            shard.handle.stop.remote()

    async def close(self) -> None:
        """Kill every actor of the run."""
        for task in self._answers:
            task.cancel()
        desk = [self.desk] if self.desk is not None else []
        shards = [s for s in self._shards if s.alive]
        for shard in shards:
            shard.alive = False
        await asyncio.to_thread(_kill, [*(s.handle for s in shards), *self._replicas, *desk])


def _kill(handles: list[Any]) -> None:
    """Kill each actor (blocking); one already gone is skipped."""
    import ray

    for handle in handles:
        try:
            ray.kill(handle, no_restart=True)
        except Exception as exc:  # an actor already gone: nothing to stop
            log.debug("kill: %s", exc)


def replica_name(run_id: str, index: int) -> str:
    """The Ray actor name of replica `index` of run `run_id` (unique in the namespace)."""
    return f"{REPLICA_PREFIX}{run_id}-{index}"


def _check_cpus(cluster: ClusterConfig, info: ClusterInfo) -> None:
    """Fail before starting replicas the cluster cannot hold (Ray would wait for ever)."""
    widest = max((node.cpus for node in info.nodes), default=0.0)
    need = cluster.encoders * cluster.encoder_cpus
    if cluster.encoder_cpus > widest or need > info.cpus:
        raise ClusterError(
            f"--encoders {cluster.encoders} × --encoder-cpus {cluster.encoder_cpus:g} needs "
            f"{need:g} CPUs, at most {widest:g} on one node; the cluster has {info.cpus:g} in "
            "all. Fix: fewer --encoders, a smaller --encoder-cpus, or more nodes"
        )


def _reason(exc: BaseException) -> str:
    """The first line of what went wrong inside Ray's wrapping of it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
