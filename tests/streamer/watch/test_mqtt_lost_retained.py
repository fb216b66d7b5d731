"""A broker that lost its retained messages (restarted without its persistence): what is still
true is retained again, so Home Assistant, restarted afterwards, does not read it as unknown."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

from mqtt_helpers import Watcher, until

from streamer.analysis.alerts import Alert
from streamer.core.frame import Caption
from streamer.core.retry import Backoff, RetryPolicy
from streamer.watch.mqtt import MqttConfig, MqttPublisher
from streamer.watch.mqtt import publisher as publisher_module
from streamer.watch.mqtt.outbox import Message, Outbox


async def test_an_alert_still_on_is_retained_again_after_the_broker_lost_it(
    own_mosquitto, monkeypatch
):
    """The alert fired before the broker went; it has not cleared: its binary sensor's "on" is
    published again once the broker is back (as the caption is), not left to the next firing,
    a cooldown away or never."""
    monkeypatch.setattr(publisher_module, "PUBLISH_TIMEOUT_S", 0.5)  # a dead link shows soon
    retry = RetryPolicy(initial=0.1, cap=0.2, jitter=0.0)
    config = MqttConfig(own_mosquitto.url(), retry=retry, prefix="t10", image_every_s=0)
    publisher = MqttPublisher(config)
    await publisher.start(SimpleNamespace(config=SimpleNamespace(alerts=()), streams=[]))
    publisher.add_stream("door", ("a dog",))
    publisher.alert("door", Alert("door", 3.0, time.time(), "a dog", 0.31, 0.27, 75, "a dog"))
    topic, url = "t10/door/alert/a_dog", own_mosquitto.url()
    try:
        async with Watcher(url) as watcher:
            await until(lambda: watcher.on(topic), 5, "the alert on")
        own_mosquitto.restart_forgetting()  # its retained messages are gone
        publisher.caption("door", Caption("door", 80, 3.2, "a dog", "tags"))  # finds it gone
        sent = lambda: publisher.reconnects == 1 and publisher.status()["queued"] == 0  # noqa: E731
        await until(lambda: publisher.connected and sent(), 5, "back, and all sent")
        async with Watcher(url) as late:  # what the broker keeps now, as Home Assistant reads it
            await until(lambda: late.on(topic), 2, "the alert's on, retained again")
    finally:
        await publisher.stop()
    assert [m.json()["state"] for m in late.on(topic)] == ["on"] and late.on(topic)[0].retain


def test_a_caption_newer_than_the_one_republished_on_reconnect_is_retained_last():
    """Back from an outage, the last caption is queued again for the broker to retain; a new
    caption that comes before that queue is out must still be the one retained last (an older
    one after it would show in Home Assistant until the next caption, hours away maybe)."""
    config = MqttConfig("mqtt://127.0.0.1:9", retry=RetryPolicy(initial=0.1, cap=0.2))
    publisher = MqttPublisher(config)
    publisher.add_stream("door")
    publisher.caption("door", Caption("door", 1, 0.1, "old", "tags"))  # held: broker away
    publisher._ever_connected, publisher._lost_at = True, 0.0  # it had been connected
    publisher._up(Backoff(config.retry))  # back: the caption is queued again
    publisher.caption("door", Caption("door", 90, 3.6, "new", "tags"))
    sent = iter(publisher._outbox.take, None)
    texts = [json.loads(m.payload)["text"] for m, _ in sent if m.topic == "streamer/door/caption"]
    assert texts[-1] == "new"


def test_a_resent_event_drops_none_held_and_waits_once():
    outbox = Outbox(1)
    outbox.event(Message("s/door/alert/a_dog", b"off"))  # the bound is reached
    outbox.resend(Message("s/door/caption", b"a cat"))
    outbox.resend(Message("s/door/alert/a_dog", b"on"))  # one of its topic waits: left out
    assert outbox.dropped == 0
    assert [outbox.take()[0].payload for _ in range(2)] == [b"off", b"a cat"]
    assert outbox.take() is None


async def test_a_run_s_alerts_start_off_clearing_an_on_left_by_a_run_that_crashed(mosquitto):
    """A run killed while its alert was on leaves that "on" retained; the next run announces
    the same alert off (`"reason": "started"`) before anything fires, so Home Assistant does
    not show the old alarm as the new run comes online (an automation on "to: on" fired)."""
    retry = RetryPolicy(initial=0.1, cap=0.2, jitter=0.0)
    config = MqttConfig(mosquitto.url(), retry=retry, prefix="t11", image_every_s=0)
    topic, run = "t11/door/alert/a_dog", SimpleNamespace(config=SimpleNamespace(alerts=()))
    crashed = MqttPublisher(config)
    await crashed.start(SimpleNamespace(**vars(run), streams=[]))
    crashed.add_stream("door", ("a dog",))
    crashed.alert("door", Alert("door", 3.0, time.time(), "a dog", 0.31, 0.27, 75, "a dog"))
    async with Watcher(mosquitto.url()) as watcher:
        await until(lambda: watcher.fired(topic), 5, "the alert on")
    for task in crashed._tasks:  # killed: no "off", no goodbye
        task.cancel()
    after = MqttPublisher(config)
    await after.start(SimpleNamespace(**vars(run), streams=[]))
    after.add_stream("door", ("a dog",))
    try:
        sent = lambda: after.connected and after.status()["queued"] == 0  # noqa: E731
        await until(sent, 5, "the new run's announcements sent")
        # Sent is not yet at the broker: a subscriber may still get the old "on" retained
        # (then the "off" live). Ask again, as a new subscriber, until the broker keeps "off".
        deadline = time.monotonic() + 5
        while True:
            async with Watcher(mosquitto.url()) as watcher:  # what the broker retains now
                await until(lambda: watcher.on(topic), 5, "the alert's retained state")
                kept = watcher.on(topic)[0]  # a subscriber gets the retained message first
            if kept.json()["state"] == "off" or time.monotonic() > deadline:
                break
    finally:
        await after.stop()
    assert kept.retain and kept.json()["state"] == "off"
    assert (kept.json()["reason"], kept.json()["query"]) == ("started", "a dog")
