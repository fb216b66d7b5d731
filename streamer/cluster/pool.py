"""The encoder pool: replicas of the model as Ray actors, and each shard's service in front.

::

    shard A: lanes ─► dispatch (≤ in_flight frames out) ─┐        ┌─► replica 1: batcher ─► model
                                                          ├─ least ┤
    shard B: lanes ─► dispatch (≤ in_flight frames out) ─┘ loaded └─► replica 2: batcher ─► model

A shard keeps the one-process contract at its lanes (`PoolEncoderService` is an
`EncoderService`): a live lane holds its newest frame only, a file lane makes its stream wait.
What it sends is what its lanes hold *now* (no deadline wait on the shard: that would add a
second one); the replica batches frames from every shard with the run's deadline rule
(`--max-batch`, `--max-wait-ms`), in a `LocalEncoderService` of its own with a lane per shard.
Only analysis-size uint8 frames cross, and pooled float32 embeddings come back.

Faults: a replica that dies is restarted by Ray where resources allow (`max_restarts=-1`); the
frames it held are sent once more to another replica when they are a file's, and dropped and
counted when they are a live stream's (its next frame is newer anyway).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import cv2
import numpy as np

from streamer.analysis.service import (
    FILE_LANE,
    LIVE_LANE,
    EncodeCounts,
    EncodedBatch,
    LaneLoad,
    LocalEncoderService,
    ModelCard,
    ServiceLoad,
)
from streamer.core.batcher import BatchPolicy
from streamer.core.channel import Channel, ChannelClosed, DropPolicy, FairChannel
from streamer.errors import ActorLostError, ClusterError
from streamer.sources.options import AnalysisSize

if TYPE_CHECKING:
    from streamer.analysis.worker import EncoderChoice

__all__ = ["EncoderReplica", "InFlight", "PoolEncoderService", "ReplicaStats"]

log = logging.getLogger("streamer")

T = TypeVar("T")
R = TypeVar("R")

_KEEP_LANE = "\0replica"  # never closed: a replica's batcher runs for the replica's life
_QUERY_LANE = "\0query"  # a search's query pictures (`embed_images`)
REPLICA_BACK_S = 60.0  # how long a shard waits for the pool to have a replica again
_INTERPOLATION = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    """One replica's work so far (for status and `/metrics`).

    Attributes:
        node: the Ray node id it runs on.
        outstanding: frames it holds now (queued or in the model).
        images, batches: encoded so far.
        busy_s: seconds in the model so far.
        batch_sizes: images per batch → batches of that size.
        pid: its process (a new one after Ray restarted it; `ray::EncoderReplica` in `top`).
    """

    node: str
    outstanding: int
    images: int
    batches: int
    busy_s: float
    batch_sizes: dict[int, int]
    pid: int = 0


class EncoderReplica:
    """One copy of the model on a Ray worker (made an actor with `ray.remote` by the driver).

    Args:
        choice: the encoder to load.
        policy: the deadline rule for batches (frames of every shard batched together).
        threads: torch threads on the CPU (None: torch's default).
    """

    def __init__(self, choice: EncoderChoice, policy: BatchPolicy, threads: int | None) -> None:
        from streamer.analysis.worker import load_encoder  # torch: only where a replica runs

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self._service: LocalEncoderService[asyncio.Future] = LocalEncoderService(
            load_encoder(choice), policy
        )
        self._service.open_lane(_KEEP_LANE, live=False)
        self._lanes: set[str] = set()
        self._tasks: list[asyncio.Task] = []
        self._outstanding = 0

    def card(self) -> ModelCard:
        """What the model is (the shards' `ModelCard`)."""
        return self._service.model

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    async def embed(self, caller: str, images: np.ndarray) -> tuple[np.ndarray, float]:
        """Embeddings of `images` ([N, H, W, 3] uint8) from shard `caller`, batched with what
        other shards send; returns them and the longest model time of their batches."""
        self._start()
        if caller not in self._lanes:
            self._service.open_lane(caller, live=False)
            self._lanes.add(caller)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(len(images))]
        self._outstanding += len(images)
        try:
            for image, future in zip(images, futures, strict=True):
                await self._service.submit(caller, image, future)
            done = await asyncio.gather(*futures)
        finally:
            self._outstanding -= len(images)
        return np.stack([embedding for embedding, _ in done]), max(s for _, s in done)

    async def embed_text(self, texts: list[str]) -> np.ndarray:
        return await self._service.embed_text(texts)

    def stats(self) -> ReplicaStats:
        load = self._service.load()
        return ReplicaStats(
            node=self.node(), outstanding=self._outstanding, images=load.images,
            batches=load.batches, busy_s=load.busy_s, batch_sizes=dict(load.batch_sizes),
            pid=os.getpid(),
        )  # fmt: skip

    def _start(self) -> None:
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._service.run()), loop.create_task(self._answer())]

    async def _answer(self) -> None:
        async for batch in self._service.results():
            for future, embedding in batch:
                if not future.done():
                    future.set_result((embedding, batch.seconds))


class InFlight:
    """Frames a shard may have at the pool at once, shared by the shard's runs.

    Args:
        frames: the bound (`--in-flight`).
    """

    def __init__(self, frames: int) -> None:
        self.free = frames
        self._room = asyncio.Event()

    async def wait(self) -> None:
        """Until at least one frame may be sent."""
        while self.free <= 0:
            self._room.clear()
            await self._room.wait()

    def take(self, frames: int) -> None:
        self.free -= frames

    def give(self, frames: int) -> None:
        self.free += frames
        self._room.set()


class _Replica:
    """A shard's view of one replica: its handle, the frames this shard has at it, and whether
    it is up (after a failure it is left alone until it answers again)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.outstanding = 0
        self.up = True


class PoolEncoderService(Generic[T]):
    """A shard's encoder service: its streams' lanes here, the model in the pool's replicas.

    Args:
        replicas: the replica actor handles (shared by every shard).
        model: the replicas' model card.
        policy: the run's batch policy (a send holds at most `max_batch` frames).
        in_flight: frames this shard may have at the replicas at once (an `InFlight` shared
            with the shard's other runs, or a number); beyond it, live lanes drop their oldest
            frame and file lanes wait, as in one process.
        caller: this shard's name (its lane at each replica).
    """

    def __init__(
        self, replicas: Sequence[Any], model: ModelCard, policy: BatchPolicy,
        in_flight: InFlight | int, caller: str,
    ) -> None:  # fmt: skip
        if not replicas:
            raise ClusterError("the encoder pool has no replica. Fix: --encoders 1 or more")
        self._replicas = [_Replica(handle) for handle in replicas]
        self._turn = 0  # ties between replicas go round
        self._model = model
        self._max_send = max(1, policy.max_batch)
        self._budget = in_flight if isinstance(in_flight, InFlight) else InFlight(in_flight)
        self._caller = caller
        self._inbox: FairChannel[tuple[np.ndarray, T, str]] = FairChannel("analysis")
        sends = max(1, self._budget.free)
        self._sent: Channel[asyncio.Task[EncodedBatch[T]]] = Channel(sends, name="sent")
        self._live: dict[str, bool] = {}
        self._lost: collections.Counter[str] = collections.Counter()
        self._resent = 0
        self._counts = EncodeCounts()

    @property
    def model(self) -> ModelCard:
        return self._model

    @property
    def resent(self) -> int:
        """File frames sent to a second replica after the first one was lost."""
        return self._resent

    def open_lane(self, lane: str, *, live: bool) -> None:
        policy = DropPolicy.DROP_OLDEST if live else DropPolicy.BLOCK
        self._inbox.add_lane(lane, LIVE_LANE if live else FILE_LANE, policy)
        self._live[lane] = live

    def submit(self, lane: str, image: np.ndarray, item: T) -> Awaitable[None]:
        return self._inbox.put(lane, (image, item, lane))

    def close_lane(self, lane: str) -> None:
        self._inbox.close_lane(lane)

    def dropped(self, lane: str) -> int:
        return self._inbox.lane(lane).dropped + self._lost[lane]

    def hurry(self) -> None:
        """Nothing to do: the pool sends what its lanes hold as soon as the budget allows."""

    async def run(self) -> None:
        """Send what the lanes hold to the replicas, at most `in_flight` frames out at once."""
        try:
            while True:
                await self._budget.wait()
                try:
                    first = await self._inbox.get()
                except ChannelClosed:
                    return
                group = [first]
                while len(group) < min(self._budget.free, self._max_send) and len(self._inbox):
                    group.append(await self._inbox.get())  # non-empty: returns at once
                self._budget.take(len(group))
                task = asyncio.get_running_loop().create_task(self._send(group))
                await self._sent.put(task)
        finally:
            self._sent.close_nowait()

    async def results(self) -> AsyncIterator[EncodedBatch[T]]:
        """Each send's embeddings, in the order sent (a lane's frames stay in order)."""
        while True:
            try:
                task = await self._sent.get()
            except ChannelClosed:
                return
            batch = await task
            if len(batch):
                yield batch

    async def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        return await self._on_a_replica("embed text", lambda r: r.embed_text.remote(list(texts)))

    async def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        embedded = []
        for image in images:  # one at a time: pictures of other sizes cross as other shapes
            crossed = self._crossing(image)[None]
            found, _ = await self._on_a_replica(
                "embed a picture", lambda r, crossed=crossed: r.embed.remote(_QUERY_LANE, crossed)
            )
            embedded.append(found)
        return np.concatenate(embedded)

    async def _on_a_replica(self, what: str, call: Callable[[Any], Awaitable[R]]) -> R:
        """`call(handle)` on the least busy replica, on another when that one is lost."""
        for _ in range(len(self._replicas) + 1):
            replica = await self._pick()
            try:
                return await call(replica.handle)
            except Exception as exc:
                if not _actor_lost(exc):
                    raise
                self._lose(replica, exc)
        raise ClusterError(f"every encoder replica failed to {what}")

    def load(self) -> ServiceLoad:
        lanes = {}
        for name, live in self._live.items():
            lane = self._inbox.lane(name)
            lanes[name] = LaneLoad(live, len(lane), self.dropped(name), lane.closed)
        return ServiceLoad(
            lanes=lanes, batches=self._counts.batches, images=self._counts.images,
            busy_s=self._counts.busy_s, last_encode_s=self._counts.last_s,
            batch_sizes=dict(self._counts.sizes),
            batch_size=self._max_send, batches_waiting=len(self._sent),
        )  # fmt: skip

    def close(self) -> None:
        """Nothing to stop here: the driver owns the replicas."""

    async def _send(self, group: list[tuple[np.ndarray, T, str]]) -> EncodedBatch[T]:
        """Embeddings of `group` from the least loaded replica; a lost replica's live frames
        are dropped (counted on their lanes), its file frames sent once more."""
        try:
            images = np.stack([self._crossing(image) for image, _, _ in group])
            items = [item for _, item, _ in group]
            try:
                embeddings, seconds = await self._call(images)
            except ActorLostError:
                keep = [i for i, (_, _, lane) in enumerate(group) if not self._live[lane]]
                for _, _, lane in group:
                    if self._live[lane]:
                        self._lost[lane] += 1  # a live frame: its stream has a newer one
                if not keep:
                    return EncodedBatch([], np.zeros((0, 0), np.float32), 0.0)
                self._resent += len(keep)
                try:
                    embeddings, seconds = await self._call(images[keep])
                except ActorLostError as exc:
                    raise ClusterError(
                        f"a file's frames were lost by two encoder replicas in a row ({exc}); "
                        "the pool is failing. Fix: check the nodes' logs (`ray status`)"
                    ) from None
                items = [items[i] for i in keep]
            self._counts.add(len(items), seconds)
            return EncodedBatch(items, embeddings, seconds)
        finally:
            self._budget.give(len(group))

    def _crossing(self, image: np.ndarray) -> np.ndarray:
        """What of a frame goes to a replica: the encoder's input, cut here.

        A frame the decoder already resized (every sampled file frame) is only center-cropped
        the way the encoder would crop it, so the replica's own resize and crop change nothing
        and the embedding is the one-process one. A frame still at full size (a live frame
        the pipeline picked after the decoder's guess) is resized here first: full frames
        never leave their node. The crop is left to the replica when the encoder resizes
        to more than its input (DINOv2: 256, then 224)."""
        cfg = self._model.preprocess
        if cfg is None:
            return image
        height, width = image.shape[:2]
        size = AnalysisSize.from_preprocess(cfg)
        resized = size.shape(height, width)
        if resized != (height, width):
            image = cv2.resize(
                image, resized[::-1], interpolation=_INTERPOLATION[size.interpolation]
            )
            height, width = resized
        if cfg.crop and not size.squash and size.target == cfg.size and height != width:
            from encoders.preprocess import center_crop_offsets  # its rounding, not a copy

            top, left = center_crop_offsets(height, width, cfg.size, cfg.crop_rounding)
            image = image[top : top + cfg.size, left : left + cfg.size]
        return np.ascontiguousarray(image)

    async def _call(self, images: np.ndarray) -> tuple[np.ndarray, float]:
        replica = await self._pick()
        replica.outstanding += len(images)
        try:
            return await replica.handle.embed.remote(self._caller, images)
        except Exception as exc:
            if not _actor_lost(exc):
                raise
            self._lose(replica, exc)
            raise ActorLostError(
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ) from None
        finally:
            replica.outstanding -= len(images)

    async def _pick(self) -> _Replica:
        """The replica with the least of this shard's frames outstanding, among those up, ties
        taken in turn (a lightly loaded pool would else send everything to the first);
        waits (bounded) while every replica is being restarted."""
        deadline = time.monotonic() + REPLICA_BACK_S
        while True:
            count = len(self._replicas)
            up = [(i, r) for i, r in enumerate(self._replicas) if r.up]
            if up:
                self._turn += 1
                _, best = min(up, key=lambda ir: (ir[1].outstanding, (ir[0] - self._turn) % count))
                return best
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"no encoder replica came back within {REPLICA_BACK_S:.0f} s. Fix: give the "
                    "cluster the resources --encoders asks for (`ray status` shows them)"
                )
            await asyncio.sleep(0.2)

    def _lose(self, replica: _Replica, exc: BaseException) -> None:
        if not replica.up:
            return  # another send already found it gone, and waits for it
        replica.up = False
        log.warning("encoder replica lost (%s); Ray restarts it where resources allow",
                    type(exc).__name__)  # fmt: skip
        asyncio.get_running_loop().create_task(self._await_back(replica))

    async def _await_back(self, replica: _Replica) -> None:
        """Mark `replica` up again once it answers (Ray restarted it)."""
        while True:
            try:
                await replica.handle.card.remote()
            except Exception as exc:
                if not _actor_lost(exc):
                    raise
                await asyncio.sleep(0.5)
                continue
            replica.up = True
            return


def _actor_lost(exc: BaseException) -> bool:
    """A Ray error meaning the actor (or its node) is gone or restarting, not a bug in it."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(exc, ActorDiedError | ActorUnavailableError | RayActorError)
