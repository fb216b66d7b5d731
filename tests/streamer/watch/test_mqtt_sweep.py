"""A run removes what an earlier run of its prefix left retained and it does not publish: a
stream or an alert dropped from the command line between runs no longer shows in Home
Assistant as an available entity with its old state."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from mqtt_helpers import Watcher, until

from streamer.analysis.alerts import Alert
from streamer.core.frame import Caption
from streamer.watch.mqtt import MqttConfig, MqttPublisher
from streamer.watch.mqtt.sweep import SWEEP_S, published_topics, stale
from streamer.watch.mqtt.topics import Topics

RUN = SimpleNamespace(config=SimpleNamespace(alerts=()), streams=[])


async def _run(config: MqttConfig, streams: dict[str, tuple[str, ...]]) -> MqttPublisher:
    publisher = MqttPublisher(config)
    await publisher.start(RUN)
    for stream, alerts in streams.items():
        publisher.add_stream(stream, alerts)
    return publisher


def _retained(watcher: Watcher, node: str) -> set[str]:
    return {m.topic for m in watcher.messages if m.retain and m.payload and node in m.topic}


async def test_a_run_removes_the_entities_and_states_an_earlier_run_left(mosquitto):
    config = MqttConfig(mosquitto.url(), prefix="t12", image_every_s=0)
    before = await _run(config, {"door": ("a dog",), "yard": ()})
    before.caption("yard", Caption("yard", 5, 0.2, "a path", "tags"))
    before.alert("door", Alert("door", 3.0, time.time(), "a dog", 0.31, 0.27, 75, "a dog"))
    async with Watcher(mosquitto.url()) as watcher:
        await until(lambda: watcher.on("t12/door/alert/a_dog") and watcher.on("t12/yard/caption"),
                    5, "the first run's messages")  # fmt: skip
    await before.stop()
    after = await _run(config, {"door": ()})  # yard and door's alert dropped
    try:
        await until(lambda: after.connected, 5, "the second run connected")
        await asyncio.sleep(SWEEP_S + 0.3)  # what it reads retained, then deletes
        await until(lambda: after.status()["queued"] == 0, 5, "everything sent")
        async with Watcher(mosquitto.url()) as watcher:
            await until(lambda: _retained(watcher, "t12"), 2, "what the broker keeps")
            kept = _retained(watcher, "t12")
    finally:
        await after.stop()
    assert "homeassistant/sensor/t12/door_caption/config" in kept
    assert not [t for t in kept if "yard" in t], kept  # its configs and its states
    assert not [t for t in kept if "alert" in t], kept  # door's dropped alert, config and state
    assert "t12/status" in kept  # the run's availability is its own, not swept


def test_only_what_the_run_does_not_publish_is_stale():
    topics = Topics("cams")
    published = published_topics(topics, {"door": ("a dog",)}, images=True)
    assert {"cams/door/caption", "cams/door/status", "cams/door/image",
            "cams/door/alert/a_dog"} <= published  # fmt: skip
    assert "homeassistant/binary_sensor/cams/door_alert_a_dog/config" in published
    found = ["cams/door/caption", "cams/yard/caption", "cams/door/alert/a_cat",
             "homeassistant/image/cams/yard_frame/config"]  # fmt: skip
    assert stale(found, published) == sorted(found[1:])
