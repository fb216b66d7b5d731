import asyncio

import pytest

from streamer.core.channel import Channel, ChannelClosed, ChannelFull, DropPolicy, FairChannel


async def test_block_policy_waits_for_room_and_keeps_order():
    ch: Channel[int] = Channel(2)
    await ch.put(1)
    await ch.put(2)
    blocked = asyncio.create_task(ch.put(3))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # full: the producer waits (backpressure)
    assert await ch.get() == 1
    await asyncio.wait_for(blocked, 1)
    await ch.close()
    assert [x async for x in ch] == [2, 3]
    assert ch.dropped == 0


async def test_drop_oldest_keeps_newest_and_counts():
    ch: Channel[int] = Channel(3, DropPolicy.DROP_OLDEST)
    for i in range(10):
        await ch.put(i)
    await ch.close()
    assert [x async for x in ch] == [7, 8, 9]
    assert ch.dropped == 7


async def test_close_wakes_blocked_reader_and_rejects_puts():
    ch: Channel[int] = Channel(1)
    reader = asyncio.create_task(ch.get())
    await asyncio.sleep(0.01)
    await ch.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(reader, 1)
    with pytest.raises(ChannelClosed):
        await ch.put(1)


async def test_close_wakes_blocked_writer():
    ch: Channel[int] = Channel(1)
    await ch.put(1)
    writer = asyncio.create_task(ch.put(2))
    await asyncio.sleep(0.01)
    await ch.close()
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(writer, 1)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity must be ≥ 1, got 0"):
        Channel(0)


async def test_put_nowait_from_a_thread_via_the_loop():
    ch: Channel[int] = Channel(2, DropPolicy.DROP_OLDEST)
    loop = asyncio.get_running_loop()

    def produce():
        for i in range(5):
            loop.call_soon_threadsafe(ch.put_nowait, i)
        loop.call_soon_threadsafe(ch.close_nowait)

    await asyncio.to_thread(produce)
    assert [x async for x in ch] == [3, 4] and ch.dropped == 3


def test_put_nowait_on_full_block_channel_raises():
    ch: Channel[int] = Channel(1)
    ch.put_nowait(1)
    with pytest.raises(ChannelFull):
        ch.put_nowait(2)


async def test_cancelled_getter_does_not_lose_an_item():
    ch: Channel[int] = Channel(4)
    getter = asyncio.create_task(ch.get())
    await asyncio.sleep(0)
    getter.cancel()
    ch.put_nowait(7)
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert await asyncio.wait_for(ch.get(), 1) == 7


async def test_fair_channel_takes_streams_in_turn_and_ends_when_all_lanes_close():
    fair: FairChannel[str] = FairChannel()
    fair.add_lane("a", 10, DropPolicy.BLOCK)
    fair.add_lane("b", 10, DropPolicy.BLOCK)
    for i in range(4):
        await fair.put("a", f"a{i}")
    await fair.put("b", "b0")
    fair.close_lane("a")
    fair.close_lane("b")
    assert [x async for x in fair] == ["a0", "b0", "a1", "a2", "a3"]


async def test_fair_channel_live_lane_keeps_newest_and_wakes_a_waiting_reader():
    fair: FairChannel[int] = FairChannel()
    fair.add_lane("cam", 1, DropPolicy.DROP_OLDEST)
    reader = asyncio.create_task(fair.get())
    await asyncio.sleep(0)
    await fair.put("cam", 1)
    assert await asyncio.wait_for(reader, 1) == 1
    for i in range(2, 6):
        await fair.put("cam", i)
    assert await fair.get() == 5 and fair.dropped == {"cam": 3}
