"""Bounded, closable channels between stages.

A stage reads its inbox with `async for item in channel` and closes its outbox when it is done,
so the stage after it ends in turn (Trio's memory-channel discipline). The drop policy is
explicit: `BLOCK` gives backpressure (files: nothing lost), `DROP_OLDEST` keeps the freshest
items (live: the newest frame wins) and counts what it dropped.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class DropPolicy(enum.Enum):
    """What `put` does when the channel is full."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class ChannelClosed(Exception):
    """`put` on a closed channel, or `get` on a closed and empty one."""


class Channel(Generic[T]):
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
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self.policy = policy
        self.name = name
        self.dropped = 0
        self._items: collections.deque[T] = collections.deque()
        self._closed = False
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, item: T) -> None:
        """Add an item; waits for room under `BLOCK`, drops the oldest under `DROP_OLDEST`."""
        async with self._changed:
            if self._closed:
                raise ChannelClosed(f"channel {self.name!r} is closed")
            if self.policy is DropPolicy.DROP_OLDEST:
                if len(self._items) >= self.capacity:
                    self._items.popleft()
                    self.dropped += 1
            else:
                await self._changed.wait_for(
                    lambda: self._closed or len(self._items) < self.capacity
                )
                if self._closed:
                    raise ChannelClosed(f"channel {self.name!r} closed while waiting to put")
            self._items.append(item)
            self._changed.notify_all()

    async def get(self) -> T:
        """Take the oldest item; raises `ChannelClosed` once closed and drained."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._items or self._closed)
            if not self._items:
                raise ChannelClosed(f"channel {self.name!r} is closed")
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    async def close(self) -> None:
        """End the channel: readers drain what is left, then stop. Idempotent."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except ChannelClosed:
                return
