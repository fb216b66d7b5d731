import asyncio

import pytest

from streamer.core.batcher import BatchPolicy, batch_items
from streamer.core.channel import Channel


async def _collect(ch):
    return [b async for b in ch]


async def test_full_batches_flush_without_waiting_for_the_deadline():
    inbox: Channel[int] = Channel(100)
    outbox: Channel[list[int]] = Channel(100)
    for i in range(10):
        await inbox.put(i)
    await inbox.close()
    # A deadline of an hour: only size (and the end of input) can flush.
    await asyncio.wait_for(batch_items(inbox, outbox, BatchPolicy(4, 3_600_000)), 2)
    assert await _collect(outbox) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_deadline_flushes_a_partial_batch():
    inbox: Channel[int] = Channel(100)
    outbox: Channel[list[int]] = Channel(100)
    task = asyncio.create_task(batch_items(inbox, outbox, BatchPolicy(8, 30)))
    await inbox.put(1)
    await inbox.put(2)
    first = await asyncio.wait_for(outbox.get(), 2)  # well before 8 items arrive
    assert first == [1, 2]
    await inbox.put(3)
    await inbox.close()
    await asyncio.wait_for(task, 2)
    assert await _collect(outbox) == [[3]]


async def test_deadline_is_measured_from_the_first_item_with_a_stepped_clock():
    now = [0.0]
    inbox: Channel[int] = Channel(100)
    outbox: Channel[list[int]] = Channel(100)
    await inbox.put(1)
    now[0] = 0.0

    def clock():
        return now[0]

    task = asyncio.create_task(batch_items(inbox, outbox, BatchPolicy(8, 1000), clock=clock))
    await asyncio.sleep(0.01)
    await inbox.put(2)  # arrives within the deadline: joins the batch
    await asyncio.sleep(0.01)
    now[0] = 5.0  # clock jumps past the deadline; the next item starts a new batch
    await inbox.put(3)
    await inbox.close()
    await asyncio.wait_for(task, 3)
    # The batcher was already waiting for a third item when the clock jumped: an item that
    # arrives after the deadline must not join the late batch, even though the real-time wait
    # (an hour's second) had not run out.
    assert await _collect(outbox) == [[1, 2], [3]]


async def test_hurry_sends_the_partial_batch_at_once_and_loses_no_item():
    inbox: Channel[int] = Channel(100)
    outbox: Channel[list[int]] = Channel(100)
    hurry = asyncio.Event()
    # A deadline of an hour: without `hurry` the first batch would wait for 8 items.
    task = asyncio.create_task(batch_items(inbox, outbox, BatchPolicy(8, 3_600_000), hurry=hurry))
    await inbox.put(1)
    await inbox.put(2)
    await asyncio.sleep(0.01)  # both taken; the batcher waits for a third
    assert len(outbox) == 0
    hurry.set()  # a writer waits for item 1
    assert await asyncio.wait_for(outbox.get(), 2) == [1, 2]
    assert not hurry.is_set()  # cleared with the send: the next batch fills again
    for item in range(3, 6):
        await inbox.put(item)
    await asyncio.sleep(0.01)
    assert len(outbox) == 0
    hurry.set()
    assert await asyncio.wait_for(outbox.get(), 2) == [3, 4, 5]
    await inbox.put(6)
    await inbox.close()
    await asyncio.wait_for(task, 2)
    assert await _collect(outbox) == [[6]]


async def test_hurry_set_before_a_batch_starts_sends_its_first_item_alone():
    inbox: Channel[int] = Channel(100)
    outbox: Channel[list[int]] = Channel(100)
    hurry = asyncio.Event()
    hurry.set()  # the writer waits for an item not submitted yet
    task = asyncio.create_task(batch_items(inbox, outbox, BatchPolicy(8, 3_600_000), hurry=hurry))
    await asyncio.sleep(0.01)
    await inbox.put(1)
    assert await asyncio.wait_for(outbox.get(), 2) == [1]
    await inbox.close()
    await asyncio.wait_for(task, 2)


async def test_outbox_closed_when_inbox_ends_empty():
    inbox: Channel[int] = Channel(1)
    outbox: Channel[list[int]] = Channel(1)
    await inbox.close()
    await batch_items(inbox, outbox, BatchPolicy())
    assert outbox.closed and await _collect(outbox) == []


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_wait_ms": -1}])
def test_policy_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match="must be"):
        BatchPolicy(**kwargs)
