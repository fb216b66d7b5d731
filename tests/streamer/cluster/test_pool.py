"""The shard's choice of encoder replica, without Ray: least outstanding, ties in turn."""

from __future__ import annotations

import collections

from streamer.analysis.service import ModelCard
from streamer.cluster.pool import PoolEncoderService
from streamer.core.batcher import BatchPolicy


class _Handle:
    """Stands in for an actor handle: only its identity matters to `_pick`."""

    def __init__(self, name: str) -> None:
        self.name = name


def _service(replicas: int) -> PoolEncoderService:
    handles = [_Handle(f"r{i}") for i in range(replicas)]
    card = ModelCard(info=None, has_text=False, preprocess=None)  # type: ignore[arg-type]
    return PoolEncoderService(handles, card, BatchPolicy(), in_flight=4, caller="shard-a")


async def test_an_idle_pool_is_used_in_turn_not_first_replica_only():
    service = _service(3)
    picks = collections.Counter([(await service._pick()).handle.name for _ in range(30)])
    assert picks == {"r0": 10, "r1": 10, "r2": 10}


async def test_the_replica_with_the_least_outstanding_wins():
    service = _service(3)
    service._replicas[0].outstanding = 8
    service._replicas[1].outstanding = 2
    assert {(await service._pick()).handle.name for _ in range(5)} == {"r2"}


async def test_a_replica_that_is_down_is_passed_over():
    service = _service(2)
    service._replicas[0].up = False
    assert {(await service._pick()).handle.name for _ in range(4)} == {"r1"}
