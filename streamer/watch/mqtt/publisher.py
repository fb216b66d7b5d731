"""`MqttPublisher`: the run's captions, alerts, statuses and pictures on an MQTT broker, with
Home Assistant discovery; a broker that is down or slow never holds up a stream.

Every hook only puts a message into the `Outbox` (bounded; the oldest event dropped and
counted past it) and returns. One task holds the connection (`aiomqtt`) and publishes what
waits, in order; when the broker goes away it reconnects with the sources' backoff
(`streamer.core.retry.Backoff`), and what was queued meanwhile is sent once it is back. A
second task ticks once a second: statuses (every `status_every_s`, at once on a change of
state) and pictures (JPEG-encoded on the low-priority thread).

An alert's binary sensor turns on when its rule fires (`alert`) and off when the rule clears
(`alert_cleared`: `streamer.analysis.alerts` says when a fired rule has stopped holding), and
off for every alert still on when the run stops (`"reason": "stopped"`) or the stream or its
alert goes away ("removed"): the pipeline clears them first, on every surface; these are for
a publisher used on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streamer.core.background import run_in_background
from streamer.core.events import Observer
from streamer.core.redact import redact
from streamer.core.retry import Backoff
from streamer.errors import ConfigError
from streamer.llm.images import encode_jpeg
from streamer.watch.mqtt.options import PASSWORD_ENV, require_aiomqtt
from streamer.watch.mqtt.outbox import Message, Outbox
from streamer.watch.mqtt.status import StatusBoard
from streamer.watch.mqtt.sweep import published_topics, retained_elsewhere, stale
from streamer.watch.mqtt.topics import (
    ALERT_OFF,
    Topics,
    alert_bodies,
    entities,
    payload,
    retained_topics,
    score_of,
)

__all__ = ["MqttPublisher"]

log = logging.getLogger("streamer.watch.mqtt")
#: CONNACK codes of a login the broker refused: MQTT 3.1.1 (4 bad user name or password, 5 not
#: authorised) and MQTT 5 (134, 135).
_REFUSED_LOGIN = {4, 5, 134, 135}

TICK_S = 1.0
FLUSH_S = 3.0  # `stop` waits this long for the queue to empty
PUBLISH_TIMEOUT_S = 10.0
PICTURE_LONG_EDGE = 1280


class MqttPublisher(Observer):
    """Publishes a run's events to an MQTT broker (`--mqtt`).

    Args:
        config: the broker and what to publish (`MqttConfig`).
        clock: monotonic seconds (injectable: tests step the throttles).

    Attributes:
        published: messages the broker took.
        reconnects: times the connection came back after it was lost.
        connected: connected to the broker now.

    Raises:
        ConfigError: aiomqtt is not installed, or `ca_file` is not a file.

    Example:
        >>> publisher = MqttPublisher(MqttConfig("mqtt://127.0.0.1:1883"))
        >>> await run_pipeline(config, observers=[publisher])  # doctest: +SKIP
    """

    def __init__(self, config: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        require_aiomqtt()
        if config.ca_file is not None and not os.path.isfile(config.ca_file):
            raise ConfigError(f"--mqtt-ca {config.ca_file!r}: no such file")
        self.config = config
        self.topics = Topics.of(config)
        self.where = config.broker.where
        self.run: Any = None
        self.published = self.reconnects = 0
        self.connected = False
        self._clock = clock
        self._outbox = Outbox(config.queue)
        self._alerts: dict[str, tuple[str, ...]] = {}  # stream → the queries that watch it
        self._on: dict[tuple[str, str], dict] = {}  # (stream, query) → the "on" body
        self._due: dict[str, float] = {}  # stream → when its next picture is due
        self._frames: dict[str, np.ndarray] = {}  # stream → a drawn frame (writer threads)
        self._board = StatusBoard(config.status_every_s, clock)
        self._closing = self._drop_warned = False
        self._lost_at: float | None = None
        self._down_reason: str | None = None  # why it is down, as last told
        self._captions: dict[str, Message] = {}  # stream → its last caption (retained)
        self._ever_connected = False
        self._swept, self._sweeping = False, None  # an earlier run's leftovers removed (`_sweep`)
        self._sent: set[str] = set()  # the topics this run has published to
        self._tasks: list[asyncio.Task] = []

    # -- what the status surfaces read -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The connection and its counters, a plain dict (the viewer's /metrics reads it)."""
        return {
            "broker": self.where,
            "connected": self.connected,
            "published": self.published,
            "dropped": self._outbox.dropped,
            "reconnects": self.reconnects,
            "queued": len(self._outbox),
        }

    @property
    def dropped(self) -> int:
        """Events dropped from a full queue while the broker was away or slow."""
        return self._outbox.dropped

    # -- observer hooks ----------------------------------------------------------------------

    @property
    def wants_frames(self) -> bool:
        """A drawn frame is wanted only when some stream's picture is due."""
        if self.config.image_every_s <= 0:
            return False
        now = self._clock()
        return any(now >= due for due in list(self._due.values()))

    async def start(self, run: Any) -> None:
        self.run = run
        rules = tuple(getattr(run.config, "alerts", ()) or ())
        for stream in run.streams:
            self.add_stream(stream.name, tuple(r.query for r in rules if r.watches(stream.name)))
        self._tasks = [
            asyncio.create_task(self._connection(), name="mqtt"),
            asyncio.create_task(self._tick(), name="mqtt-tick"),
        ]

    def frame(self, stream: str, image: np.ndarray, timeline: float) -> None:
        """Keep the frame if the stream's picture is due (writer thread: a reference only)."""
        due = self._due.get(stream)
        if due is not None and self._clock() >= due:
            self._due[stream] = self._clock() + self.config.image_every_s
            self._frames[stream] = image

    def caption(self, stream: str, caption: Any) -> None:
        body = {"stream": stream, "text": caption.text, "source": caption.source,
                "pts": round(caption.pts, 3), "frame": caption.frame_index,
                "wall": round(time.time(), 3)}  # fmt: skip
        message = Message(self.topics.caption(stream), payload(body))
        self._captions[stream] = message
        self._event(message)

    def alert(self, stream: str, alert: Any) -> None:
        """The alert's binary sensor on (again), its event fired, and a picture of it soon."""
        body, fired = alert_bodies(stream, alert)
        self._on[(stream, alert.query)] = body
        self._event(Message(self.topics.alert(stream, alert.query), payload(body)))
        self._event(Message(self.topics.fired(stream, alert.query), payload(fired), retain=False))
        if stream in self._due:
            self._due[stream] = self._clock()  # the next drawn frame shows the alert's banner

    def alert_cleared(self, stream: str, cleared: Any) -> None:
        """The alert's binary sensor off: its rule has stopped holding, or its stream has
        stopped delivering frames (`reason`)."""
        body = self._on.pop((stream, cleared.query), None)
        if body is None or stream not in self._alerts:
            return
        self._off(stream, cleared.query, body, time=round(cleared.time, 3),
                  score=score_of(cleared.score), cleared=round(cleared.wall, 3),
                  frame=cleared.frame_index, reason=cleared.reason)  # fmt: skip

    async def stop(self) -> None:
        """Turn the alerts still on off, send the last statuses, wait up to `FLUSH_S` for the
        queue to empty, say goodbye (offline), and close."""
        if not self._tasks:
            return
        connection, ticker = self._tasks
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await self._pictures()  # a frame kept since the last tick
        for (stream, query), body in list(self._on.items()):  # nothing watches any more
            self._off(stream, query, body, cleared=round(time.time(), 3), reason="stopped")
        self._on.clear()
        self._statuses(final=True)
        self._closing = True
        self._outbox.ready.set()
        try:
            await asyncio.wait_for(asyncio.shield(connection), FLUSH_S)
        except TimeoutError:
            connection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connection
        self._report()

    # -- streams come and go -----------------------------------------------------------------

    def add_stream(self, stream: str, alerts: tuple[str, ...] = ()) -> None:
        """Publish `stream`'s events from now on, and its Home Assistant entities.

        Args:
            stream: the stream's name.
            alerts: the queries of the alert rules that watch it (a binary sensor each).
        """
        fresh = stream not in self._alerts
        self._alerts[stream] = tuple(alerts)
        if self.config.image_every_s > 0:
            self._due[stream] = 0.0
        if self.config.discovery and self.connected:  # else they go out once connected
            for entity in self._entities(stream):
                self._outbox.state(Message(entity.topic, payload(entity.config)))
        if fresh:
            self._off_at_start(stream, alerts)

    def set_alerts(self, stream: str, rules: tuple[Any, ...]) -> None:
        """`stream`'s alerts are now `rules` (`AlertRule`s; the stream API replaced its set):
        the binary sensors of the queries it no longer has are removed with their retained
        states, the others announced (again)."""
        queries = tuple(rule.query for rule in rules)
        known = self._alerts.get(stream, ())
        gone = [query for query in known if query not in queries]
        before = {e.topic for e in self._entities(stream)} if self.config.discovery else set()
        self._alerts[stream] = queries
        after = {e.topic for e in self._entities(stream)} if self.config.discovery else set()
        for query in gone:  # off before its topic goes: an automation hears it end
            self._off_removed(stream, query)
        for topic in [*sorted(before - after), *(self.topics.alert(stream, q) for q in gone)]:
            self._outbox.state(Message(topic, b""))  # an empty retained message deletes one
        self.add_stream(stream, queries)
        self._off_at_start(stream, [query for query in queries if query not in known])

    def remove_stream(self, stream: str) -> None:
        """Remove `stream`'s Home Assistant entities (empty retained configs) and clear its
        retained states from the broker; nothing more of it is published."""
        queries = self._alerts.pop(stream, ())
        topics = retained_topics(self.topics, stream, queries, self.config.image_every_s > 0,
                                 configs=self.config.discovery)  # fmt: skip
        self._due.pop(stream, None)
        self._frames.pop(stream, None)
        self._captions.pop(stream, None)
        self._board.forget(stream)
        prefix = f"{self.topics.prefix}/{stream}/"
        self._outbox.forget(prefix, keep=f"{prefix}alert/")  # an alert's off still goes out
        for query in [q for s, q in self._on if s == stream]:
            self._off_removed(stream, query)
        for topic in topics:  # an empty retained message deletes the retained one
            self._outbox.state(Message(topic, b""))

    def _entities(self, stream: str):
        images = self.config.image_every_s > 0
        return entities(self.topics, stream, self._alerts.get(stream, ()), images)

    # -- queueing ----------------------------------------------------------------------------

    def _event(self, message: Message) -> None:
        if self._outbox.event(message) and not self._drop_warned:
            self._drop_warned = True  # again after the queue has emptied
            log.warning("mqtt: %d messages wait for %s: dropping the oldest (counted in "
                        "/metrics)", self.config.queue, self.where)  # fmt: skip

    async def _tick(self) -> None:
        while True:
            self._statuses()
            await self._pictures()
            await asyncio.sleep(TICK_S)

    def _statuses(self, final: bool = False) -> None:
        streams = [s for s in getattr(self.run, "streams", ()) if s.name in self._alerts]
        for name, body in self._board.due(streams, final):
            self._outbox.state(Message(self.topics.status(name), payload(body), qos=0))

    def _off(self, stream: str, query: str, body: dict, **changes: Any) -> None:
        """Publish `query`'s alert on `stream` off: its last "on" body with `changes`."""
        off = {**body, **changes, "state": ALERT_OFF}
        self._event(Message(self.topics.alert(stream, query), payload(off)))

    def _off_at_start(self, stream: str, queries: Any) -> None:
        """Each new alert of `stream` starts off (`"reason": "started"`): a retained "on" left
        by a run that crashed would otherwise stay on (an automation saw a false alarm when
        the new run came online), and one never fired would read "unknown"."""
        for query in queries:
            if (stream, query) not in self._on:
                body = {"state": ALERT_OFF, "stream": stream, "query": query,
                        "cleared": round(time.time(), 3), "reason": "started"}  # fmt: skip
                self._event(Message(self.topics.alert(stream, query), payload(body)))

    def _off_removed(self, stream: str, query: str) -> None:
        """`query`'s alert on `stream` off, if on: it or its stream left the run."""
        body = self._on.pop((stream, query), None)
        if body is not None:
            self._off(stream, query, body, cleared=round(time.time(), 3), reason="removed")

    async def _pictures(self) -> None:
        for stream in list(self._frames):
            image = self._frames.pop(stream, None)
            if image is None or stream not in self._alerts:
                continue
            jpeg = await run_in_background(encode_jpeg, image, PICTURE_LONG_EDGE)
            if stream in self._alerts:  # not removed while it was encoded
                self._outbox.state(Message(self.topics.image(stream), jpeg, qos=0))

    # -- the connection ----------------------------------------------------------------------

    async def _connection(self) -> None:
        """Connect, publish, and reconnect with backoff when the broker goes away, until
        `stop` asks to close."""
        import aiomqtt

        backoff = Backoff(self.config.retry)
        while True:
            try:
                async with self._client(aiomqtt) as client:
                    self._up(backoff)
                    await self._publish(client, Message(self.topics.availability, b"online"))
                    if self.config.discovery and not self._swept:
                        self._sweeping = asyncio.create_task(self._sweep(client))  # beside
                    if await self._send(client):
                        self.connected = False
                        return
            except (aiomqtt.MqttError, OSError) as exc:  # OSError: a TLS handshake refused
                # (only a CONNACK's code says why a login failed: a publish's are paho's own)
                login = isinstance(exc, aiomqtt.exceptions.MqttConnectError)
                self._down(exc, refused_login=login and _code(exc) in _REFUSED_LOGIN)
            if self._closing:
                return
            delay = backoff.next_delay()
            await asyncio.sleep(delay if delay is not None else self.config.retry.cap)

    async def _sweep(self, client: Any) -> None:
        """Delete what an earlier run of this prefix left retained and this one does not
        publish (`streamer.watch.mqtt.sweep`); tried once (a broker may drop a client whose
        subscription its rules deny)."""
        self._swept = True
        try:
            found = await retained_elsewhere(client, self.topics)
        except Exception as exc:  # aiomqtt's errors, or the connection closing under it
            log.debug("mqtt: the retained topics could not be read: %s", exc)
            return
        images = self.config.image_every_s > 0
        ours = published_topics(self.topics, self._alerts, images) | self._sent
        for topic in (gone := stale(found, ours)):  # not what this run sent (a stream removed)
            self._outbox.state(Message(topic, b""))  # an empty retained message deletes one
        if gone:
            log.info("mqtt: removed %d retained topics an earlier run left", len(gone))

    def _client(self, aiomqtt: Any) -> Any:
        broker = self.config.broker
        tls = ssl.create_default_context(cafile=self.config.ca_file) if broker.tls else None
        will = aiomqtt.Will(self.topics.availability, b"offline", qos=1, retain=True)
        return aiomqtt.Client(
            broker.host, broker.port, username=broker.username, password=broker.password,
            identifier=self.config.client, will=will, tls_context=tls, keepalive=30,
            timeout=PUBLISH_TIMEOUT_S,
        )  # fmt: skip

    async def _send(self, client: Any) -> bool:
        """Publish what waits until the connection fails (raises) or `stop` asks to close
        (returns True once the queue is empty and offline is said)."""
        while True:
            taken = self._outbox.take()
            if taken is None:
                self._drop_warned = False
                if self._closing:
                    await self._publish(client, Message(self.topics.availability, b"offline"))
                    return True
                await self._outbox.ready.wait()
                continue
            message, event = taken
            try:
                await self._publish(client, message)
            except BaseException:
                self._outbox.put_back(message, event)
                raise

    async def _publish(self, client: Any, message: Message) -> None:
        await client.publish(message.topic, message.payload, qos=message.qos,
                             retain=message.retain, timeout=PUBLISH_TIMEOUT_S)  # fmt: skip
        self.published += 1
        self._sent.add(message.topic)

    def _up(self, backoff: Backoff) -> None:
        backoff.reset()
        self.connected = True
        if not self._ever_connected:
            log.info("mqtt: connected to %s", self.where)
        else:
            self.reconnects += 1
            log.warning("mqtt: %s is back after %.1f s; sending the %d messages held",
                        self.where, self._clock() - self._lost_at, len(self._outbox))  # fmt: skip
            # Lost with a broker's retained messages: the latest caption (it may not change
            # for hours) and each alert still on. Queued as events, so a caption or an off
            # that comes meanwhile still goes out after them (states go after every event).
            for message in self._captions.values():
                self._outbox.resend(message)
            for (stream, query), body in self._on.items():
                self._outbox.resend(Message(self.topics.alert(stream, query), payload(body)))
        self._ever_connected, self._lost_at, self._down_reason = True, None, None
        if self.config.discovery:  # again: the broker may have lost its retained messages
            for stream in self._alerts:
                for entity in self._entities(stream):
                    self._outbox.state(Message(entity.topic, payload(entity.config)))

    def _down(self, exc: BaseException, *, refused_login: bool = False) -> None:
        was = self.connected
        self.connected = False
        reason = redact(str(exc))
        if self._lost_at is not None and reason == self._down_reason:
            log.debug("mqtt: %s still unreachable: %s", self.where, reason)
            return
        if self._lost_at is None:
            self._lost_at = self._clock()
        self._down_reason = reason  # told again when it changes (down, then up but refusing)
        if refused_login:
            log.warning("mqtt: %s refused the user and password (%s): check them in --mqtt "
                        "(or [mqtt] mqtt in the file, or %s); retrying with backoff",
                        self.where, reason, PASSWORD_ENV)  # fmt: skip
            return
        what = "lost" if was else "cannot reach"  # at the start, or again after a loss
        log.warning("mqtt: %s %s (%s); retrying with backoff, holding up to %d messages",
                    what, self.where, reason, self.config.queue)  # fmt: skip

    def _report(self) -> None:
        left = len(self._outbox)
        level = logging.WARNING if left or self.dropped else logging.INFO
        log.log(level, "mqtt: %d messages published to %s, %d dropped, %d not sent",
                self.published, self.where, self.dropped, left)  # fmt: skip


def _code(exc: BaseException) -> int | None:
    """An aiomqtt error's code: an int, or a paho `ReasonCode`'s value."""
    code = getattr(exc, "rc", None)
    return getattr(code, "value", code)
