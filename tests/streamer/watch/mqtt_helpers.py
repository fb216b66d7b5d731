"""A subscriber for the MQTT tests: collects what a real broker delivers, waits for conditions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from streamer.watch.mqtt.options import broker_url


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Watcher:
    """`async with Watcher(url) as w:` subscribes to every topic and collects in `w.messages`.

    `identifier` with `clean=False` keeps a persistent session: what is published while it is
    away (QoS 1) waits at the broker for it. An mqtts:// URL connects with TLS, trusting
    `ca_file` (None: the system's authorities).
    """

    def __init__(
        self, url: str, identifier: str | None = None, clean: bool = True,
        ca_file: str | None = None,
    ) -> None:  # fmt: skip
        broker = broker_url(url)
        tls = ssl.create_default_context(cafile=ca_file) if broker.tls else None
        self.client = aiomqtt.Client(
            broker.host, broker.port, username=broker.username, password=broker.password,
            identifier=identifier, clean_session=clean, tls_context=tls,
        )  # fmt: skip
        self.messages: list[Received] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Watcher:
        await self.client.__aenter__()
        await self.client.subscribe("#", qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self.client.__aexit__(None, None, None)

    async def _read(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for message in self.client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self.messages.append(Received(message.topic.value, payload, message.retain))

    def on(self, topic: str) -> list[Received]:
        """The messages received on `topic`, in order."""
        return [m for m in self.messages if m.topic == topic]

    def under(self, prefix: str) -> list[Received]:
        return [m for m in self.messages if m.topic.startswith(prefix)]

    def fired(self, topic: str, *, under: bool = False) -> list[Received]:
        """The alert messages on `topic` (every topic below it, `under`) but the "off" each
        alert starts with (`"reason": "started"`): what its rule did."""
        found = self.under(topic) if under else self.on(topic)
        return [m for m in found if not _started(m)]


def _started(message: Received) -> bool:
    try:
        body = message.json()
    except ValueError:  # an empty payload: a deleted retained message
        return False
    return isinstance(body, dict) and body.get("reason") == "started"


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what or check}")
