"""Micro-batching of analysis frames: flush when full or when the oldest has waited long enough.

Deadline batching keeps the encoder busy with large batches under load and still bounds how
long any one frame waits when frames trickle in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from streamer.channel import Channel, ChannelClosed

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When a batch is sent.

    Attributes:
        max_batch: send as soon as this many items are gathered.
        max_wait_ms: send when the first item of the batch has waited this long.
    """

    max_batch: int = 8
    max_wait_ms: float = 50.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {self.max_batch}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be ≥ 0, got {self.max_wait_ms}")


async def batch_items(
    inbox: Channel[T],
    outbox: Channel[list[T]],
    policy: BatchPolicy,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Group items from `inbox` into lists for `outbox`; closes `outbox` at the end.

    Args:
        inbox: items to batch, in order.
        outbox: receives non-empty lists of at most `policy.max_batch` items, in order.
        policy: size and deadline.
        clock: seconds, monotonic; injectable for tests.
    """
    try:
        while True:
            try:
                first = await inbox.get()
            except ChannelClosed:
                return
            batch = [first]
            deadline = clock() + policy.max_wait_ms / 1000.0
            ended = await _fill(inbox, batch, policy.max_batch, deadline, clock)
            await outbox.put(batch)
            if ended:
                return
    finally:
        await outbox.close()


async def _fill(
    inbox: Channel[T], batch: list[T], size: int, deadline: float, clock: Callable[[], float]
) -> bool:
    """Add items until `size` or `deadline`; True when the inbox has ended."""
    while len(batch) < size:
        if len(inbox):  # ready items join without waiting for the deadline
            batch.append(await inbox.get())
            continue
        remaining = deadline - clock()
        if remaining <= 0:
            return False
        try:
            batch.append(await asyncio.wait_for(inbox.get(), remaining))
        except TimeoutError:
            return False
        except ChannelClosed:
            return True
    return False
