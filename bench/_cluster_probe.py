"""What `bench/cluster.py` measures at the encoder-service seam, from outside `streamer/`.

The pipeline reaches the model only through its encoder service, so a subclass of the service
sees every analysed frame go in and come back:

  latency   from a frame's submit to its embedding coming out of `results()` (the time a live
            frame's analysis takes; the frame itself is written without waiting for it), and
            the model's time for the batch it was in (`EncodedBatch.seconds`): the rest is
            waiting and, on a cluster, the way to the replica and back;
  frames    how many came back, with the wall-clock time of the first submit and the last
            result (analysed frames/s of the encoder, startup left out);
  bytes     (the pool only) what each call to a replica carries, sized by Ray's own serializer
            on the very objects sent (`images`, the caller's name) and returned (embeddings,
            seconds).

A shard builds its `PoolEncoderService` itself, in a Ray worker: `install` (a Ray
`worker_process_setup_hook`) swaps the name the shard module uses for `ProbedPool` in every
worker, and each probed service writes its numbers to a JSON file in `$STREAMER_BENCH_PROBE`
when the pipeline closes it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import numpy as np

from streamer.analysis.service import EncodedBatch, LocalEncoderService
from streamer.cluster.pool import PoolEncoderService

PROBE_DIR = "STREAMER_BENCH_PROBE"  # the environment variable naming the probes' folder
_FORGET_S = 10.0  # a submitted frame not back by then was dropped (a live lane's stale one)


class _Probe:
    """The timing half, mixed into a service class before it."""

    def _probe_start(self) -> None:
        self._submitted: dict[int, tuple[Any, float]] = {}  # id(item) → (item, perf_counter)
        self.latency_ms: list[float] = []
        self.model_ms: list[float] = []  # the model's time for each frame's batch
        self.first_wall = 0.0
        self.last_wall = 0.0
        self.bytes_out: list[int] = []  # per call to a replica
        self.bytes_back: list[int] = []
        self.frames_sent: list[int] = []
        self.sent_shapes: dict[str, int] = {}  # "HxWxC" of the frames sent → how many
        self.lane_drops = 0  # frames the service's lanes dropped (live: a newer one came)
        self._written = False  # the numbers go to the probe folder once, at the first close

    def submit(self, lane: str, image: np.ndarray, item: Any) -> Awaitable[None]:
        now = time.perf_counter()
        if not self._submitted:
            self.first_wall = self.first_wall or time.time()
        if len(self._submitted) > 256:  # live lanes drop frames: forget the stale ones
            old = now - _FORGET_S
            self._submitted = {k: v for k, v in self._submitted.items() if v[1] > old}
        self._submitted[id(item)] = (item, now)  # the item is kept, so its id stays unique
        return super().submit(lane, image, item)  # type: ignore[misc]

    async def results(self) -> AsyncIterator[EncodedBatch]:
        async for batch in super().results():  # type: ignore[misc]
            now = time.perf_counter()
            for item, _ in batch:
                sent = self._submitted.pop(id(item), None)
                if sent is not None:
                    self.latency_ms.append((now - sent[1]) * 1000)
                    self.model_ms.append(batch.seconds * 1000)
            self.last_wall = time.time()
            yield batch

    def numbers(self) -> dict:
        """What this service saw, as plain JSON."""
        return {
            "latency_ms": self.latency_ms,
            "model_ms": self.model_ms,
            "first_wall": self.first_wall,
            "last_wall": self.last_wall,
            "bytes_out": self.bytes_out,
            "bytes_back": self.bytes_back,
            "frames_sent": self.frames_sent,
            "sent_shapes": self.sent_shapes,
            "lane_drops": self.lane_drops,
        }

    def close(self) -> None:
        # Idempotent, as the service's own close: a run closes its service when its stages
        # end and again on the way out.
        if self._written:
            return
        self._written = True
        self.lane_drops = self.load().dropped  # type: ignore[attr-defined]
        folder = os.environ.get(PROBE_DIR)
        if folder:
            path = Path(folder) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
            path.write_text(json.dumps(self.numbers()))
        super().close()  # type: ignore[misc]


class ProbedLocal(_Probe, LocalEncoderService):
    """The one-process service, timed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._probe_start()


class ProbedPool(_Probe, PoolEncoderService):
    """A shard's pool service, timed, with the size of every call to a replica."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._probe_start()

    async def _call(self, images: np.ndarray) -> tuple[np.ndarray, float]:
        returned = await super()._call(images)
        self.bytes_out.append(_ray_bytes(self._caller) + _ray_bytes(images))
        self.bytes_back.append(_ray_bytes(returned))
        self.frames_sent.append(len(images))
        shape = "x".join(map(str, images.shape[1:]))
        self.sent_shapes[shape] = self.sent_shapes.get(shape, 0) + len(images)
        return returned


def _ray_bytes(value: Any) -> int:
    """The bytes Ray's serializer makes of `value` (what a task argument or result carries)."""
    import ray

    context = ray._private.worker.global_worker.get_serialization_context()
    return int(context.serialize(value).total_bytes)


def install() -> None:
    """Ray's `worker_process_setup_hook`: shards of this worker build `ProbedPool`s."""
    import streamer.cluster.shard as shard

    shard.PoolEncoderService = ProbedPool  # type: ignore[misc]


def collect(folder: Path) -> list[dict]:
    """Every probe's numbers written under `folder`."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
