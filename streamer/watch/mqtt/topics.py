"""What goes where on the broker: topic names and payloads, Home Assistant discovery configs.

Pure functions of names and values (no I/O), so the tests read the same names the publisher
writes. With the default prefixes::

    streamer/status                               online / offline (retained; offline is the
                                                  last will, sent by the broker if we vanish)
    streamer/STREAM/caption                       {"text", "source", "pts", "frame", "wall"}
    streamer/STREAM/alert/NAME                    {"state": "on"|"off", "query", "score", ...}
    streamer/STREAM/alert/NAME/fired              each firing, not retained (an event entity)
    streamer/STREAM/status                        {"state", "fps", "latency_ms", "frames", ...}
    streamer/STREAM/image                         the latest annotated frame, JPEG bytes
    homeassistant/COMPONENT/NODE/OBJECT/config    discovery (retained; empty: entity removed)

Every state message is retained, so Home Assistant (or any subscriber) that connects later
gets the current value at once. A firing is not a state: an alert's binary sensor stays on
while its rule fires again, so each firing also goes out once, unretained, on its `fired`
topic (a subscriber that connects later must not see old firings as new).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from streamer.core.version import __version__
from streamer.sources.status import DELIVERING_STATES
from streamer.watch.mqtt.options import MqttConfig

__all__ = [
    "ALERT_FIRED",
    "ALERT_ON",
    "Entity",
    "Topics",
    "alert_bodies",
    "alert_name",
    "entities",
    "payload",
    "retained_topics",
    "score_of",
]

ALERT_ON, ALERT_OFF = "on", "off"
ALERT_FIRED = "fired"  # the event type of an alert's event entity
_NOT_ID = re.compile(r"[^a-z0-9]+")
_ID = re.compile(r"[a-z0-9_-]+")
_PLAIN = re.compile(r"[a-z0-9]+(?: [a-z0-9]+)*")  # a query whose name is its words and '_'
_NAME_MAX = 64
# Home Assistant keeps at most 255 characters of a state: the caption's text is cut there (its
# whole text stays in the entity's attributes).
_STATE_MAX = 255


# A stream's counters as sensors: (object key, name, field of the status message, icon).
_COUNTERS = (
    ("dropped", "Frames dropped", "frames.dropped", "mdi:delete-sweep-outline"),
    ("reconnects", "Reconnects", "reconnects", "mdi:connection"),
    ("damaged", "Damaged packets", "damaged", "mdi:image-broken-variant"),
)


# The entities that stay available while their stream delivers no frames: they say why.
_RUN_ONLY = frozenset({"status", *(key for key, *_ in _COUNTERS)})
# A stream's availability, read from its status message: online in the states frames arrive in.
_DELIVERING = f"{{{{ 'online' if value_json.state in {DELIVERING_STATES!r} else 'offline' }}}}"


def _available(topics: Topics, stream: str, key: str) -> dict[str, Any]:
    """Entity `key` of `stream` is unavailable while the run is (its last will). Unless it is
    in `_RUN_ONLY`, also while the stream delivers no frames (mode all): a camera gone offline
    greys out its caption, fps, latency, alerts and picture instead of showing their last
    states as if they held, and its status and counters stay to say why."""
    if key in _RUN_ONLY:
        return {"availability_topic": topics.availability}
    stream_status = {"topic": topics.status(stream), "value_template": _DELIVERING}
    return {"availability": [{"topic": topics.availability}, stream_status],
            "availability_mode": "all"}  # fmt: skip


def alert_name(query: str) -> str:
    """An alert's query as a topic level and id, one per query.

    A plain query (lower-case words of a-z and 0-9 between single spaces, at most
    `_NAME_MAX` characters) is its words joined by '_', as it has always been: "a person at the
    door" → a_person_at_the_door. Any other is its nearest such form and a digest of the whole
    query: "A person!" → a_person_e3ce65, so queries that differ only in case, punctuation or
    past `_NAME_MAX` characters do not share one topic (each would overwrite the other's state).
    """
    name = _NOT_ID.sub("_", query.lower()).strip("_")[:_NAME_MAX]
    if len(query) <= _NAME_MAX and _PLAIN.fullmatch(query):
        return name
    return _digested(name or "alert", query)


def score_of(score: float) -> float | None:
    """An alert's score as its messages carry it: 4 decimals, null when there is none (NaN:
    no frame was looked at)."""
    return round(float(score), 4) if math.isfinite(score) else None


def alert_bodies(stream: str, alert: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A firing's messages: the binary sensor's "on" state, and the event entity's event (the
    same fields, its `event_type` in place of the state)."""
    fields = {"stream": stream, "query": alert.query, "score": score_of(alert.score),
              "threshold": alert.threshold, "time": round(alert.time, 3),
              "wall": round(alert.wall, 3), "frame": alert.frame_index,
              "caption": alert.caption, "clip": alert.clip}  # fmt: skip
    return {"state": ALERT_ON, **fields}, {"event_type": ALERT_FIRED, **fields}


def _object_id(text: str) -> str:
    """`text` as a Home Assistant id, one per name: as it is when it is one already (a-z, 0-9,
    '_', '-'), else its nearest such form and a digest of the whole name ("Door" and "door",
    "a.b" and "a_b" stay two devices: one would have replaced the other's entities)."""
    if _ID.fullmatch(text):
        return text
    return _digested(_NOT_ID.sub("_", text.lower()).strip("_") or "x", text)


def _digested(name: str, text: str) -> str:
    """`name` (an id made from `text`) with 6 hex digits of `text`'s SHA-256 after it."""
    return f"{name}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def payload(value: dict[str, Any]) -> bytes:
    """A message's JSON, UTF-8 (NaN and infinities are refused: null is the JSON for none)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one run (`MqttConfig.prefix` and `discovery_prefix`)."""

    prefix: str = "streamer"
    discovery_prefix: str = "homeassistant"

    @classmethod
    def of(cls, config: MqttConfig) -> Topics:
        return cls(config.prefix, config.discovery_prefix)

    @property
    def availability(self) -> str:
        return f"{self.prefix}/status"

    def caption(self, stream: str) -> str:
        return f"{self.prefix}/{stream}/caption"

    def alert(self, stream: str, query: str) -> str:
        return f"{self.prefix}/{stream}/alert/{alert_name(query)}"

    def fired(self, stream: str, query: str) -> str:
        return f"{self.alert(stream, query)}/{ALERT_FIRED}"

    def status(self, stream: str) -> str:
        return f"{self.prefix}/{stream}/status"

    def image(self, stream: str) -> str:
        return f"{self.prefix}/{stream}/image"

    @property
    def node(self) -> str:
        """The discovery configs' node id: one per prefix, so two runs with their own prefixes
        on one broker are two sets of entities."""
        return _object_id(self.prefix)

    def config(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node}/{object_id}/config"


@dataclass(frozen=True, slots=True)
class Entity:
    """One Home Assistant entity: where its discovery config goes, and the config."""

    topic: str
    config: dict[str, Any]


def entities(
    topics: Topics, stream: str, alerts: tuple[str, ...], images: bool
) -> Iterator[Entity]:
    """The entities of one stream: its caption, status, fps and latency sensors, its counters'
    sensors (frames dropped, reconnects, damaged packets), a binary sensor per alert query,
    and its picture (when `images`); when each is available: `_available`.

    Args:
        topics: the run's topics.
        stream: the stream's name.
        alerts: the queries of the alert rules that watch the stream.
        images: pictures are published (`image_every_s` > 0).
    """
    sid = _object_id(stream)
    caption, status = topics.caption(stream), topics.status(stream)
    base = {
        "device": {
            "identifiers": [f"streamer_{topics.node}_{sid}"],
            "name": stream,
            "manufacturer": "streamer",
            "model": "video stream",
            "sw_version": __version__,
        },
        "origin": {"name": "streamer", "sw_version": __version__},
    }

    def entity(component: str, key: str, **config: Any) -> Entity:
        object_id = f"{sid}_{key}"
        unique = {"unique_id": f"streamer_{topics.node}_{object_id}"}
        return Entity(topics.config(component, object_id),
                      {**config, **unique, **_available(topics, stream, key), **base})  # fmt: skip

    yield entity("sensor", "caption", name="Caption", state_topic=caption,
                 value_template=f"{{{{ value_json.text[:{_STATE_MAX}] }}}}",
                 json_attributes_topic=caption, icon="mdi:text-box-outline")  # fmt: skip
    yield entity("sensor", "status", name="Status", state_topic=status,
                 value_template="{{ value_json.state }}", json_attributes_topic=status,
                 icon="mdi:cctv")  # fmt: skip
    yield entity("sensor", "fps", name="Frames per second", state_topic=status,
                 value_template="{{ value_json.fps.out }}", unit_of_measurement="fps",
                 state_class="measurement", entity_category="diagnostic")  # fmt: skip
    # "None" (the template of a null) is what Home Assistant reads as no value.
    yield entity("sensor", "latency", name="Latency p95", state_topic=status,
                 value_template="{{ value_json.latency_ms.p95 }}", unit_of_measurement="ms",
                 device_class="duration", state_class="measurement",
                 entity_category="diagnostic")  # fmt: skip
    for key, name, field, icon in _COUNTERS:  # counters: graphed, and alerted on, as totals
        yield entity("sensor", key, name=name, state_topic=status,
                     value_template=f"{{{{ value_json.{field} }}}}", icon=icon,
                     state_class="total_increasing", entity_category="diagnostic")  # fmt: skip
    for query in dict.fromkeys(alerts):
        yield from _alert_entities(entity, topics, stream, query)
    if images:
        yield entity("image", "frame", name="Frame", image_topic=topics.image(stream),
                     content_type="image/jpeg")  # fmt: skip


def _alert_entities(
    entity: Callable[..., Entity], topics: Topics, stream: str, query: str
) -> Iterator[Entity]:
    """An alert's binary sensor (on while its rule holds) and its event entity (each firing, for
    automations: a rule that fires again while on leaves the sensor as it is)."""
    topic, name = topics.alert(stream, query), alert_name(query)
    yield entity("binary_sensor", f"alert_{name}", name=f"Alert: {query}", state_topic=topic,
                 value_template="{{ value_json.state }}", payload_on=ALERT_ON,
                 payload_off=ALERT_OFF, json_attributes_topic=topic,
                 icon="mdi:bell-alert")  # fmt: skip
    yield entity("event", f"{ALERT_FIRED}_{name}", name=f"Alert fired: {query}",
                 state_topic=topics.fired(stream, query), event_types=[ALERT_FIRED],
                 icon="mdi:bell-ring")  # fmt: skip


def retained_topics(
    topics: Topics,
    stream: str,
    alerts: tuple[str, ...],
    images: bool,
    *,
    configs: bool = True,
) -> list[str]:
    """Every topic a stream's messages are retained on: its entities' discovery configs
    (`configs`), its caption, status and picture, and each alert's state."""
    found = [e.topic for e in entities(topics, stream, alerts, images)] if configs else []
    found += [topics.caption(stream), topics.status(stream), topics.image(stream)]
    return found + [topics.alert(stream, query) for query in alerts]
