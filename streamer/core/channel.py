"""Bounded, closable channels between stages.

A stage reads its inbox with `async for item in channel` and closes its outbox when it is done,
so the stage after it ends in turn (Trio's memory-channel discipline). The drop policy is
explicit: `BLOCK` gives backpressure (files: nothing lost), `DROP_OLDEST` keeps the freshest
items (live: the newest frame wins) and counts what it dropped.

Channels belong to one event loop; threads hand items in with
`loop.call_soon_threadsafe(channel.put_nowait, item)`.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from streamer.errors import ChannelClosed, ChannelFull, ConfigError

T = TypeVar("T")


class DropPolicy(enum.Enum):
    """What `put` does when the channel is full."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class _Readable(Generic[T]):
    """`async for item in channel` until the channel is closed and drained."""

    async def get(self) -> T:
        raise NotImplementedError

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except ChannelClosed:
                return


class Channel(_Readable[T]):
    """An asyncio queue with a capacity, a drop policy and an end.

    Args:
        capacity: most items held at once (≥ 1).
        policy: what a full channel does on `put`.
        name: for messages and statistics.
    """

    def __init__(
        self, capacity: int, policy: DropPolicy = DropPolicy.BLOCK, name: str = ""
    ) -> None:
        if capacity < 1:
            raise ConfigError(f"capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self.policy = policy
        self.name = name
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._closed = False
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._putters: collections.deque[asyncio.Future[None]] = collections.deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: T) -> None:
        """Add an item without waiting: drops the oldest when full under `DROP_OLDEST`.

        Raises:
            ChannelClosed: the channel is closed.
            ChannelFull: the channel is full and its policy is `BLOCK`.
        """
        if self._closed:
            raise ChannelClosed(f"channel {self.name!r} is closed")
        if len(self._items) >= self.capacity:
            if self.policy is DropPolicy.BLOCK:
                raise ChannelFull(f"channel {self.name!r} is full")
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        _wake(self._getters)

    async def put(self, item: T) -> None:
        """Add an item; waits for room under `BLOCK`, drops the oldest under `DROP_OLDEST`."""
        while (
            self.policy is DropPolicy.BLOCK
            and not self._closed
            and len(self._items) >= self.capacity
        ):
            await _wait(self._putters)
        self.put_nowait(item)

    async def get(self) -> T:
        """Take the oldest item; raises `ChannelClosed` once closed and drained."""
        while not self._items:
            if self._closed:
                raise ChannelClosed(f"channel {self.name!r} is closed")
            await _wait(self._getters)
        item = self._items.popleft()
        _wake(self._putters)
        return item

    def close_nowait(self) -> None:
        """End the channel: readers drain what is left, then stop. Idempotent."""
        self._closed = True
        _wake(self._getters, every=True)
        _wake(self._putters, every=True)

    async def close(self) -> None:
        """`close_nowait`, awaitable for symmetry with `put`."""
        self.close_nowait()


async def _wait(waiters: collections.deque[asyncio.Future[None]]) -> None:
    future = asyncio.get_running_loop().create_future()
    waiters.append(future)
    try:
        await future
    finally:
        if future in waiters:
            waiters.remove(future)


def _wake(waiters: collections.deque[asyncio.Future[None]], every: bool = False) -> None:
    """Wake one waiter (or all): it re-checks its condition, so a spurious wake is harmless."""
    while waiters:
        future = waiters.popleft()
        if not future.done():
            future.set_result(None)
            if not every:
                return


class FairChannel(_Readable[T]):
    """Several streams' items in one inbox, taken round-robin so no stream starves another.

    Each stream has its own bounded lane with its own policy: a file stream blocks its
    producer when its lane is full, a live stream keeps only its newest items. `get` takes
    from the lanes in turn; the channel ends when every lane is closed and drained.

    Args:
        name: for messages.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._lanes: dict[str, Channel[T]] = {}
        self._turn = 0
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()

    def add_lane(self, stream: str, capacity: int, policy: DropPolicy) -> None:
        """Open a lane for `stream` before anything is put into it."""
        self._lanes[stream] = Channel(capacity, policy, name=f"{self.name}/{stream}")

    def lane(self, stream: str) -> Channel[T]:
        return self._lanes[stream]

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    @property
    def dropped(self) -> dict[str, int]:
        return {stream: lane.dropped for stream, lane in self._lanes.items()}

    async def put(self, stream: str, item: T) -> None:
        await self._lanes[stream].put(item)
        _wake(self._getters)

    def close_lane(self, stream: str) -> None:
        self._lanes[stream].close_nowait()
        _wake(self._getters, every=True)

    async def get(self) -> T:
        """The next item, taking the lanes in turn; `ChannelClosed` when all have ended."""
        while True:
            lanes = list(self._lanes.values())
            for step in range(len(lanes)):
                lane = lanes[(self._turn + step) % len(lanes)]
                if len(lane):
                    self._turn = (self._turn + step + 1) % len(lanes)
                    return await lane.get()  # non-empty: returns without waiting
            if all(lane.closed for lane in lanes):
                raise ChannelClosed(f"channel {self.name!r} is closed")
            await _wait(self._getters)
