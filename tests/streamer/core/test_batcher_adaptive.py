"""Adaptive batching: the flush size follows the load, stepped with an injected clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from streamer.core.batcher import BatchPolicy, BatchSizer, batch_items
from streamer.core.channel import Channel

ADAPTIVE = BatchPolicy(max_batch=4, max_wait_ms=50, adaptive=True, batch_ceiling=16,
                       latency_budget_ms=200)  # fmt: skip


async def _batches(items: int, policy: BatchPolicy, clock) -> list[list[int]]:
    inbox: Channel[int] = Channel(1000)
    outbox: Channel[list[int]] = Channel(1000)
    for i in range(items):
        await inbox.put(i)
    await inbox.close()
    await asyncio.wait_for(batch_items(inbox, outbox, policy, clock=clock), 5)
    return [b async for b in outbox]


def test_a_fixed_policy_never_changes_size() -> None:
    sizer = BatchSizer(BatchPolicy(max_batch=8))
    sizer.flushed(8, latency_s=10.0, backlog=1000)
    sizer.encoded(8, seconds=10.0)
    assert sizer.size == 8 and sizer.changes == 0


def test_grows_while_full_batches_leave_a_backlog_up_to_the_ceiling() -> None:
    sizer = BatchSizer(ADAPTIVE)
    sizes = []
    for _ in range(4):
        sizer.flushed(sizer.size, latency_s=0.01, backlog=100)
        sizes.append(sizer.size)
    assert sizes == [8, 16, 16, 16]


def test_no_growth_without_backlog_or_a_full_batch() -> None:
    sizer = BatchSizer(ADAPTIVE)
    sizer.flushed(4, latency_s=0.01, backlog=3)  # fewer waiting than a batch
    sizer.flushed(2, latency_s=0.01, backlog=100)  # the deadline flushed a partial batch
    assert sizer.size == 4


def test_no_growth_when_twice_the_batch_would_blow_the_budget() -> None:
    sizer = BatchSizer(ADAPTIVE)
    sizer.flushed(4, latency_s=0.15, backlog=100)  # 2 x 150 ms > 200 ms
    assert sizer.size == 4


def test_halves_when_a_batch_exceeds_the_budget_down_to_one() -> None:
    sizer = BatchSizer(BatchPolicy(max_batch=8, adaptive=True, batch_ceiling=8))
    sizes = []
    for _ in range(5):
        sizer.flushed(sizer.size, latency_s=0.5, backlog=100)
        sizes.append(sizer.size)
    assert sizes == [4, 2, 1, 1, 1]


def test_encode_reports_cap_at_half_the_batch_they_describe() -> None:
    sizer = BatchSizer(BatchPolicy(max_batch=16, adaptive=True, batch_ceiling=16))
    for _ in range(3):  # three slow batches of 16 formed before the first report
        sizer.encoded(16, seconds=0.5)
    assert sizer.size == 8
    sizer.encoded(8, seconds=0.01)  # within budget: no change
    assert sizer.size == 8


async def test_backlog_grows_the_batches_and_every_item_arrives_in_order() -> None:
    batches = await _batches(40, ADAPTIVE, clock=lambda: 0.0)
    assert [len(b) for b in batches] == [4, 8, 16, 12]
    assert [x for b in batches for x in b] == list(range(40))


async def test_slow_batches_shrink_the_size() -> None:
    ticks = itertools.count()

    def clock() -> float:  # every reading is 300 ms after the last: every batch is over budget
        return next(ticks) * 0.3

    policy = BatchPolicy(max_batch=8, adaptive=True, batch_ceiling=8)
    batches = await _batches(15, policy, clock=clock)
    assert [len(b) for b in batches] == [8, 4, 2, 1]
    assert [x for b in batches for x in b] == list(range(15))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 8, "adaptive": True, "batch_ceiling": 4}, "batch_ceiling must be ≥"),
        ({"adaptive": True, "max_wait_ms": 100, "latency_budget_ms": 50}, "latency_budget_ms"),
    ],
)
def test_adaptive_policy_rejects_inconsistent_values(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        BatchPolicy(**kwargs)
