"""What waits to be published: events in a bounded queue, states by topic (newest only).

The hooks put messages here and return; the one sending task takes them out. Events (a
caption, an alert turning on or off) each matter, so they queue in order, and past the bound
the oldest is dropped and counted. A state that is republished whole (a stream's status, its
picture) only matters as its newest value, so one per topic is held: a broker away for an
hour costs one status and one picture per stream, not an hour of them.
"""

from __future__ import annotations

import asyncio
import collections
from typing import NamedTuple

__all__ = ["Message", "Outbox"]


class Message(NamedTuple):
    """One MQTT message to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Outbox:
    """Messages waiting for the broker.

    Args:
        bound: events held at most; past it the oldest is dropped (`dropped` counts them).

    Attributes:
        dropped: events dropped from a full queue.
    """

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError(f"bound must be ≥ 1, got {bound}")
        self.bound = bound
        self.dropped = 0
        self._events: collections.deque[Message] = collections.deque()
        self._states: dict[str, Message] = {}
        self.ready = asyncio.Event()  # set while something waits

    def __len__(self) -> int:
        return len(self._events) + len(self._states)

    def event(self, message: Message) -> bool:
        """Queue an event; returns True when the oldest had to be dropped for it."""
        full = len(self._events) >= self.bound
        if full:
            self._events.popleft()
            self.dropped += 1
        self._events.append(message)
        self.ready.set()
        return full

    def resend(self, message: Message) -> None:
        """Queue again an event whose retained copy the broker lost (the latest caption, an
        alert still on), after the events held: none is dropped for it, and it is left out
        when one of its topic waits already (the same, or newer)."""
        if any(held.topic == message.topic for held in self._events):
            return
        self._events.append(message)
        self.ready.set()

    def state(self, message: Message) -> None:
        """Hold `message` as its topic's newest state (an older one still waiting goes)."""
        self._states.pop(message.topic, None)  # re-inserted last: states go out in order
        self._states[message.topic] = message
        self.ready.set()

    def take(self) -> tuple[Message, bool] | None:
        """The next message to send (events first, in order) and whether it is an event; None
        when there is none."""
        if self._events:
            return self._events.popleft(), True
        if self._states:
            return self._states.pop(next(iter(self._states))), False
        self.ready.clear()
        return None

    def put_back(self, message: Message, event: bool) -> None:
        """A message that could not be sent goes back to the front, to be sent first after the
        broker is back (unless a newer state of its topic came meanwhile)."""
        if event:
            if len(self._events) >= self.bound:
                self.dropped += 1  # it is the oldest of them all
                return
            self._events.appendleft(message)
        elif message.topic not in self._states:
            self._states = {message.topic: message, **self._states}
        self.ready.set()

    def forget(self, prefix: str, keep: str | None = None) -> None:
        """Drop every message waiting for a topic under `prefix` (a stream that was removed),
        but the events under `keep` (its alerts turning on and off: their end is heard)."""
        self._events = collections.deque(
            m for m in self._events
            if not m.topic.startswith(prefix) or (keep is not None and m.topic.startswith(keep))
        )  # fmt: skip
        self._states = {t: m for t, m in self._states.items() if not t.startswith(prefix)}
