"""The encoder service: the one interface through which the pipeline reaches the model.

The pipeline never calls a model. Each stream submits its sampled frames, already at analysis
size, on a lane of its own; embeddings come back in batches of (item, embedding). Text (the label
vocabulary, alert queries) is embedded through the same service; the service says what its model
is and how loaded it is, and is closed at the end::

    stream a ─ submit ─► lane a ─┐
                                 ├─► taken in turn ─► batched ─► encoded ─► results()
    stream b ─ submit ─► lane b ─┘    (fair)      (max_batch, max_wait or hurry)

A lane keeps its stream's contract: a live lane holds the newest frame only, dropping (and
counting) the one it replaces; a file lane holds a few and then makes its stream wait. Results
are in submission order within each lane; lanes are taken round-robin, so none starves another.

Everything crossing the interface is plain: numpy arrays in and out, frozen records for the model
and the load. Threads, torch tensors and the `Encoder` object stay behind it, so the same
interface can be served from somewhere else (a pool of Ray actors fed analysis-size crops).

`LocalEncoderService` is the in-process implementation: `FairChannel` lanes, the deadline
batcher (`streamer.core.batcher`) and one encoder thread (`EncoderWorker`); a run starts it
while its model loads (`streamer.analysis.loading`). Importing this module loads no torch: a
process that only submits frames and reads results never needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import numpy as np

from streamer.core.batcher import BatchPolicy, BatchSizer, batch_items
from streamer.core.channel import Channel, ChannelClosed, DropPolicy, FairChannel

if TYPE_CHECKING:
    from encoders import Encoder, EncoderInfo, PreprocessConfig

__all__ = [
    "FILE_LANE",
    "LIVE_LANE",
    "EncodeCounts",
    "EncodedBatch",
    "EncoderService",
    "LaneLoad",
    "LocalEncoderService",
    "ModelCard",
    "ServiceLoad",
]

T = TypeVar("T")

LIVE_LANE = 1  # a live stream's newest sampled frame: an older one waiting is stale, dropped
FILE_LANE = 16  # a file stream's sampled frames waiting; its router waits beyond that
BATCHES_AHEAD = 2  # batches formed while the encoder is busy (deadline batching goes on)


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What the service's model is, as loaded.

    Attributes:
        info: the encoder's own description (kind, model, weights, dim, device, dtype); the
            text-embedding cache is keyed by it.
        has_text: the model embeds text (zero-shot tags, alert queries).
        preprocess: how the model turns frames into its input; the decode plan resizes analysed
            frames by its resize step. None for a model that takes any size as it is.
        logit_scale: the scale of image-text similarities before a softmax (CLIP's trained
            temperature; 100 for a model without one).
    """

    info: EncoderInfo
    has_text: bool
    preprocess: PreprocessConfig | None
    logit_scale: float = 100.0

    @property
    def kind(self) -> str:
        """The encoder family: "clip", "dinov2", "default"…"""
        return self.info.kind

    @property
    def name(self) -> str:
        """The model name within its kind: "ViT-B/32", "small"…"""
        return self.info.model

    @property
    def random_weights(self) -> bool:
        """The weights are an untrained initialisation: tags and scores mean nothing."""
        return self.info.random_weights

    @classmethod
    def of(cls, encoder: Encoder) -> ModelCard:
        """The card of a loaded encoder."""
        return cls(
            info=encoder.info,
            has_text=bool(encoder.has_text),
            preprocess=getattr(encoder, "preprocess_cfg", None),
            logit_scale=float(getattr(encoder, "logit_scale", 100.0)),
        )


@dataclass(frozen=True, slots=True)
class EncodedBatch(Generic[T]):
    """Items encoded together; iterating gives (item, embedding) pairs in order.

    Attributes:
        items: what was submitted with each image, in order.
        embeddings: [len(items), dim] float32, L2-normalised, row i for items[i].
        seconds: time the model took for the batch.
    """

    items: Sequence[T]
    embeddings: np.ndarray
    seconds: float

    def __iter__(self) -> Iterator[tuple[T, np.ndarray]]:
        return zip(self.items, self.embeddings, strict=True)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class LaneLoad:
    """One lane's state.

    Attributes:
        live: drops the oldest when full (else its stream waits).
        queued: frames waiting to be batched.
        dropped: frames dropped so far (live lanes only).
        closed: the stream has submitted its last frame.
    """

    live: bool
    queued: int
    dropped: int
    closed: bool


@dataclass(frozen=True, slots=True)
class ServiceLoad:
    """How loaded the service is, and the work it has done (for status and `/metrics`).

    Attributes:
        lanes: each lane's state, by lane name.
        batches, images: batches and images encoded so far.
        busy_s: seconds spent in the model so far.
        last_encode_s: seconds the latest batch took (0 before the first).
        batch_sizes: images per batch → how many batches had that many.
        batch_size: the flush size in force (it moves with adaptive batching).
        batches_waiting: batches formed and waiting for the model.
    """

    lanes: Mapping[str, LaneLoad]
    batches: int
    images: int
    busy_s: float
    last_encode_s: float
    batch_sizes: Mapping[int, int]
    batch_size: int
    batches_waiting: int

    @property
    def queued(self) -> int:
        """Frames waiting in every lane."""
        return sum(lane.queued for lane in self.lanes.values())

    @property
    def dropped(self) -> int:
        """Frames dropped in every lane."""
        return sum(lane.dropped for lane in self.lanes.values())

    @classmethod
    def total(cls, loads: Sequence[ServiceLoad]) -> ServiceLoad:
        """The load of several services as one (a cluster's shards each see part of the pool):
        their lanes together, counts summed, the latest encode time and flush size the
        largest."""
        sizes: dict[int, int] = {}
        for load in loads:
            for size, count in load.batch_sizes.items():
                sizes[size] = sizes.get(size, 0) + count
        return cls(
            lanes={name: lane for load in loads for name, lane in load.lanes.items()},
            batches=sum(x.batches for x in loads), images=sum(x.images for x in loads),
            busy_s=sum(x.busy_s for x in loads),
            last_encode_s=max((x.last_encode_s for x in loads), default=0.0),
            batch_sizes=sizes, batch_size=max((x.batch_size for x in loads), default=0),
            batches_waiting=sum(x.batches_waiting for x in loads),
        )  # fmt: skip


class EncoderService(Protocol[T]):
    """The encoder behind the pipeline: lanes in, batches of embeddings out.

    Lifecycle: open a lane per stream before the run, `run()` in the run's task group, read
    `results()` in another task, `close_lane()` when a stream ends (results end once every
    lane is closed and drained), `close()` at the end.
    """

    @property
    def model(self) -> ModelCard:
        """What the model is (fixed for the service's life)."""
        ...

    def open_lane(self, lane: str, *, live: bool) -> None:
        """Open `lane` for one stream before anything is submitted on it."""
        ...

    def submit(self, lane: str, image: np.ndarray, item: T) -> Awaitable[None]:
        """Queue `image` (HxWx3 uint8, analysis size) with `item`, its result's label. A live
        lane never waits (it drops its oldest); a full file lane waits for room."""
        ...

    def close_lane(self, lane: str) -> None:
        """The stream has submitted its last frame; what it queued is still encoded."""
        ...

    def dropped(self, lane: str) -> int:
        """Frames `lane` has dropped so far (cheap: read per frame for the HUD)."""
        ...

    def hurry(self) -> None:
        """Someone waits for a frame already submitted (a file's writer): send what is
        gathered for the model now rather than at the batch deadline."""
        ...

    async def run(self) -> None:
        """The service's own work until every lane is closed and drained."""
        ...

    def results(self) -> AsyncIterator[EncodedBatch[T]]:
        """Batches as they are encoded, for one reader; ends after the last lane's last frame."""
        ...

    async def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] float32, L2-normalised (models with `has_text` only)."""
        ...

    async def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[len(images), dim] float32, L2-normalised: pictures of any size outside the lanes
        (a search's query), on the run's model, in turn with the frames' batches."""
        ...

    def load(self) -> ServiceLoad:
        """The queues and the work done, now."""
        ...

    def close(self) -> None:
        """Stop; waits for a batch in the model, unless the service owns its model: then the
        model is freed on a thread of its own, after that batch, without waiting. Idempotent."""
        ...


class LocalEncoderService(Generic[T]):
    """The encoder service in this process: fair lanes, the deadline batcher, one thread.

    Args:
        encoder: the loaded encoder; only the service's thread calls it from now on.
        policy: when a batch is sent (`BatchPolicy`); adaptive batching also learns from the
            encode times.
        background: run the model at low priority (`start_local_encoder_service`).
        owned: the service loaded `encoder` and is its only holder: closing frees it.
    """

    def __init__(
        self,
        encoder: Encoder,
        policy: BatchPolicy | None = None,
        *,
        background: bool = False,
        owned: bool = False,
    ) -> None:
        from streamer.analysis.worker import EncoderWorker  # torch: only where a model runs

        self._policy = policy if policy is not None else BatchPolicy()
        self._model = ModelCard.of(encoder)
        self._worker = EncoderWorker(encoder, background=background)
        # One sizer sees both sides: how long batches wait (batcher) and take (encoder).
        self._sizer = BatchSizer(self._policy)
        self._inbox: FairChannel[tuple[np.ndarray, T]] = FairChannel("analysis")
        self._batches: Channel[list[tuple[np.ndarray, T]]] = Channel(BATCHES_AHEAD, name="batches")
        self._live: dict[str, bool] = {}
        self._counts = EncodeCounts()
        self._closed = False
        self._owned = owned
        self._hurry = asyncio.Event()

    @property
    def model(self) -> ModelCard:
        return self._model

    def open_lane(self, lane: str, *, live: bool) -> None:
        policy = DropPolicy.DROP_OLDEST if live else DropPolicy.BLOCK
        self._inbox.add_lane(lane, LIVE_LANE if live else FILE_LANE, policy)
        self._live[lane] = live

    def submit(self, lane: str, image: np.ndarray, item: T) -> Awaitable[None]:
        # The lane's own coroutine, not one wrapped around it: one await per frame, as before.
        return self._inbox.put(lane, (image, item))

    def close_lane(self, lane: str) -> None:
        self._inbox.close_lane(lane)

    def dropped(self, lane: str) -> int:
        return self._inbox.lane(lane).dropped

    def hurry(self) -> None:
        self._hurry.set()

    async def run(self) -> None:
        """Batch what the lanes hold until every lane is closed and drained."""
        await batch_items(
            self._inbox, self._batches, self._policy, sizer=self._sizer, hurry=self._hurry
        )

    async def results(self) -> AsyncIterator[EncodedBatch[T]]:
        """Each batch the batcher formed, encoded on the service's thread when asked for."""
        while True:
            try:
                batch = await self._batches.get()
            except ChannelClosed:
                return
            yield await self._encode(batch)

    async def _encode(self, batch: list[tuple[np.ndarray, T]]) -> EncodedBatch[T]:
        self._check_open()
        embeddings, seconds = await self._worker.embed([image for image, _ in batch])
        self._sizer.encoded(len(batch), seconds)
        self._counts.add(len(batch), seconds)
        return EncodedBatch([item for _, item in batch], embeddings, seconds)

    async def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        self._check_open()
        return await self._worker.embed_text(list(texts))

    async def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self._check_open()
        embeddings, _ = await self._worker.embed(list(images))
        return embeddings

    def load(self) -> ServiceLoad:
        lanes = {}
        for name, live in self._live.items():
            lane = self._inbox.lane(name)
            lanes[name] = LaneLoad(live, len(lane), lane.dropped, lane.closed)
        counts = self._counts
        return ServiceLoad(
            lanes=lanes, batches=counts.batches, images=counts.images, busy_s=counts.busy_s,
            last_encode_s=counts.last_s, batch_sizes=dict(counts.sizes),
            batch_size=self._sizer.size, batches_waiting=len(self._batches),
        )  # fmt: skip

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._worker.close(release=self._owned)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the encoder service is closed")


class EncodeCounts:
    """The work done, counted on the event loop as each batch comes back."""

    def __init__(self) -> None:
        self.batches = 0
        self.images = 0
        self.busy_s = 0.0
        self.last_s = 0.0
        self.sizes: dict[int, int] = {}  # images in a batch → batches of that size

    def add(self, images: int, seconds: float) -> None:
        self.batches += 1
        self.images += images
        self.busy_s += seconds
        self.last_s = seconds
        self.sizes[images] = self.sizes.get(images, 0) + 1
