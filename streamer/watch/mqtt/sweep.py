"""What an earlier run of this prefix left retained on the broker and this run does not
publish: removed at the run's first connection.

Home Assistant keeps an entity for as long as its discovery config is retained. The stream API
removes a stream's entities, but a stream, an alert or the pictures dropped from the command
line between two runs left their configs and last states retained, and since availability is
the run's (`PREFIX/status`), Home Assistant showed those entities available with their old
states: a camera no longer watched reading "online", an alert query no longer asked still
"on". At its first connection a run reads what is retained under its own topics (its
discovery node, its streams' caption, status, image and alert topics) for `SWEEP_S`, and each
topic it does not publish itself gets an empty retained message, which deletes it (and the
entity, for a config). Two runs on one broker have their own prefixes (README), so a run only
ever reads its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from streamer.watch.mqtt.topics import Topics, retained_topics

__all__ = ["SWEEP_S", "published_topics", "retained_elsewhere", "stale"]

#: How long the run listens for retained messages after subscribing (a broker sends them at
#: once; this is the slack of a slow link).
SWEEP_S = 1.0


def _patterns(topics: Topics) -> list[str]:
    node, prefix = topics.node, topics.prefix
    config = f"{topics.discovery_prefix}/+/{node}/+/config"
    states = [f"{prefix}/+/{kind}" for kind in ("caption", "status", "image")]
    return [config, *states, f"{prefix}/+/alert/+"]


def published_topics(topics: Topics, alerts: dict[str, tuple[str, ...]], images: bool) -> set[str]:
    """Every retained topic a run with these streams (`alerts`: stream → its alert queries)
    publishes: its entities' configs and its streams' states."""
    found: set[str] = set()
    for stream, queries in alerts.items():
        found.update(retained_topics(topics, stream, queries, images))
    return found


async def retained_elsewhere(client: Any, topics: Topics, wait_s: float = SWEEP_S) -> set[str]:
    """The topics under this run's own that hold a retained message now (an aiomqtt client,
    connected). Messages published meanwhile arrive without the retain flag and are not
    counted."""
    patterns = _patterns(topics)
    for pattern in patterns:
        await client.subscribe(pattern, qos=1)
    found: set[str] = set()

    async def collect() -> None:
        async for message in client.messages:
            if message.retain and message.payload:
                found.add(str(message.topic))

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), wait_s)
    for pattern in patterns:
        await client.unsubscribe(pattern)
    return found


def stale(found: Iterable[str], published: set[str]) -> list[str]:
    """The retained topics `found` that the run does not publish, in order."""
    return sorted(set(found) - published)
