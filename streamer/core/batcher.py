"""Micro-batching of analysis frames: flush when full or when the oldest has waited long enough.

Deadline batching keeps the encoder busy with large batches under load and still bounds how
long any one frame waits when frames trickle in.

With `BatchPolicy(adaptive=True)` the flush size follows the load (`BatchSizer`): it doubles
while frames back up in the inbox behind full batches (bigger batches: more frames per second
from the encoder), and halves when a batch took longer than the latency budget. Batching
never drops anything: every item reaches the outbox, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from streamer.core.channel import Channel, ChannelClosed
from streamer.core.checks import float_above, float_at_least, int_at_least
from streamer.core.options import Option, Ordered, option, validate

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When a batch is sent.

    Attributes:
        max_batch: send as soon as this many items are gathered (with `adaptive`: the
            starting size).
        max_wait_ms: send when the first item of the batch has waited this long.
        adaptive: let the batch size follow the load (`BatchSizer`), between 1 and
            `batch_ceiling`.
        batch_ceiling: the largest size adaptive batching grows to.
        latency_budget_ms: adaptive batching halves the size when a batch took longer than
            this, from its first item to the encoder taking it (or to its embeddings, where the
            consumer reports encode times).
    """

    max_batch: int = option(8, Option("--max-batch", "frames per encoder batch", int_at_least(1)))
    max_wait_ms: float = option(
        50.0, Option("--max-wait-ms", "batch deadline in ms", float_at_least(0, "milliseconds"))
    )
    adaptive: bool = option(
        False,
        Option("--adaptive-batch", "batch size follows the load: grows (to --batch-ceiling) "
               "while frames back up, halves when a batch takes longer than "
               "--latency-budget-ms", kind="toggle"),
    )  # fmt: skip
    batch_ceiling: int = option(
        64, Option("--batch-ceiling", "largest adaptive batch, ≥ --max-batch", int_at_least(1))
    )
    latency_budget_ms: float = option(
        200.0,
        Option("--latency-budget-ms", "adaptive batching's budget per batch in ms, "
               "> --max-wait-ms", float_above(0, "milliseconds")),
    )  # fmt: skip

    RULES: ClassVar = (
        Ordered("batch_ceiling", "≥", "max_batch", when="adaptive"),
        Ordered("latency_budget_ms", ">", "max_wait_ms", when="adaptive",
                why="a batch may wait that long to fill"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)


class BatchSizer:
    """The flush size in force: `policy.max_batch`, or adapted to the load when adaptive.

    Rules, deliberately simple so a run is easy to reason about:

    - shrink (halve, down to 1) when a batch's latency exceeded the budget;
    - grow (double, up to `batch_ceiling`) when a full batch left at least as many items
      waiting behind it, unless twice this batch's latency would exceed the budget.

    Args:
        policy: sizes and budget; with `adaptive=False` the size stays `max_batch`.

    Attributes:
        size: the current flush size.
        changes: how many times the size changed (for logs and benchmarks).
    """

    def __init__(self, policy: BatchPolicy) -> None:
        self.policy = policy
        self.size = policy.max_batch
        self.changes = 0

    def flushed(self, count: int, latency_s: float, backlog: int) -> None:
        """A batch of `count` items was handed on `latency_s` after its first item was taken;
        `backlog` items were waiting in the inbox then."""
        if not self.policy.adaptive:
            return
        budget_s = self.policy.latency_budget_ms / 1000.0
        if latency_s > budget_s:
            self._resize(self.size // 2)
        elif count >= self.size and backlog >= self.size and 2 * latency_s <= budget_s:
            self._resize(self.size * 2)

    def encoded(self, count: int, seconds: float) -> None:
        """A consumer's report: a batch of `count` took `seconds` to encode (shrinks only).

        Batches already queued were formed at the old size; each report caps the size at half
        the batch it describes, so a few late reports do not shrink it again and again.
        """
        if self.policy.adaptive and seconds * 1000.0 > self.policy.latency_budget_ms:
            self._resize(min(self.size, count // 2))

    def _resize(self, size: int) -> None:
        size = max(1, min(size, self.policy.batch_ceiling))
        if size != self.size:
            self.size = size
            self.changes += 1


async def batch_items(
    inbox: Channel[T],
    outbox: Channel[list[T]],
    policy: BatchPolicy,
    clock: Callable[[], float] = time.monotonic,
    sizer: BatchSizer | None = None,
    hurry: asyncio.Event | None = None,
) -> None:
    """Group items from `inbox` into lists for `outbox`; closes `outbox` at the end.

    A batch is sent when it holds the size in force, when its first item has waited
    `policy.max_wait_ms` by `clock`, or when `hurry` is set; an item taken after that deadline
    starts the next batch.

    Args:
        inbox: items to batch, in order.
        outbox: receives non-empty lists of items, in order: at most `policy.max_batch` each,
            or at most the adaptive size in force (`BatchSizer`).
        policy: size and deadline.
        clock: seconds, monotonic; injectable for tests.
        sizer: the size in force; pass one to also feed it encode times (`sizer.encoded`);
            None makes one from `policy`.
        hurry: set by whoever waits for an item (a file's writer): the batch being filled,
            or the next one, is sent without waiting for more; cleared at each send.
    """
    sizer = sizer if sizer is not None else BatchSizer(policy)
    late: list[T] = []  # an item that arrived after its batch's deadline: the next one's first
    try:
        while True:
            if late:
                first = late.pop()
            else:
                try:
                    first = await inbox.get()
                except ChannelClosed:
                    return
            batch = [first]
            started = clock()
            deadline = started + policy.max_wait_ms / 1000.0
            ended = await _fill(inbox, batch, sizer.size, deadline, clock, late, hurry)
            if hurry is not None:
                hurry.clear()
            await outbox.put(batch)  # waits while the encoder is busy (file contract)
            sizer.flushed(len(batch), clock() - started, len(inbox) + len(late))
            if ended:
                return
    finally:
        await outbox.close()


async def _fill(
    inbox: Channel[T],
    batch: list[T],
    size: int,
    deadline: float,
    clock: Callable[[], float],
    late: list[T],
    hurry: asyncio.Event | None,
) -> bool:
    """Add items until `size`, `deadline` or `hurry`; True when the inbox has ended.

    The wait for the next item is bounded by the deadline in real seconds, but `clock` decides:
    an item it shows arriving after the deadline goes to `late`, not into this batch.
    """
    while len(batch) < size:
        if len(inbox):  # ready items join without waiting for the deadline
            batch.append(await inbox.get())
            continue
        remaining = deadline - clock()
        if remaining <= 0 or (hurry is not None and hurry.is_set()):
            return False
        try:
            item = await _next(inbox, remaining, hurry)
        except TimeoutError:
            return False
        except ChannelClosed:
            return True
        if clock() > deadline:
            late.append(item)
            return False
        batch.append(item)
    return False


async def _next(inbox: Channel[T], timeout: float, hurry: asyncio.Event | None) -> T:
    """The inbox's next item within `timeout` seconds; `TimeoutError` when none came in time
    or `hurry` was set first (nothing is taken from the inbox then)."""
    if hurry is None:
        return await asyncio.wait_for(inbox.get(), timeout)
    get = asyncio.ensure_future(inbox.get())
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        await asyncio.wait((get, hurried), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hurried.cancel()
        if not get.done():
            get.cancel()  # a get still waiting has taken nothing: cancelling it loses no item
            await asyncio.wait((get,))
    if get.cancelled():
        raise TimeoutError
    return get.result()  # the item, or the inbox's ChannelClosed
