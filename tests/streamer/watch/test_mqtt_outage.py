"""The broker stopped and started again in the middle of a live run: the stream never stalls,
the oldest events are dropped past the bound (counted), and what was held is sent once the
broker is back."""

from __future__ import annotations

import asyncio
import time

import pytest
from media import read_jsonl
from mqtt_helpers import Watcher, until

from streamer import CaptionPolicy, OutputConfig, RunConfig, run_pipeline
from streamer.analysis.alerts import AlertRule
from streamer.core.retry import RetryPolicy
from streamer.watch.mqtt import MqttConfig, MqttPublisher

QUEUE = 8  # events held while the broker is away: an alert is two (its state, its event)


@pytest.mark.slow
async def test_a_broker_restarted_mid_run_costs_no_frames_and_gets_what_was_held(
    own_mosquitto, tmp_path, long_clip, tiny_encoder
):
    rule = AlertRule("a rabbit", threshold=-1.0, frames=1, cooldown_s=0.0)  # every analysed frame
    config = RunConfig(input=f"clip={long_clip}", live=True, alerts=(rule,),
                       outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))  # fmt: skip
    retry = RetryPolicy(initial=0.2, cap=0.5, jitter=0.0)
    publisher = MqttPublisher(MqttConfig(own_mosquitto.url(), queue=QUEUE, retry=retry))
    stop = asyncio.Event()
    url = own_mosquitto.url()
    # A persistent session: what is published while this subscriber is away waits for it.
    watcher = await Watcher(url, identifier="outage-watcher", clean=False).__aenter__()
    run = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[publisher])
    )
    try:
        alerts = "streamer/clip/alert/a_rabbit"
        await until(lambda: len(watcher.on(alerts)) >= 2, 60, "alerts before the outage")
        stream = publisher.run.streams[0]
        await watcher.__aexit__(None, None, None)
        first = watcher  # what it got before the outage counts as received too
        delivered_at_loss = stream.stats.delivered  # counted from the stop: noticing the loss
        own_mosquitto.stop()  # can take as long as the queue takes to fill
        await until(lambda: not publisher.connected, what="the loss noticed")
        await until(lambda: publisher.dropped >= 2, 30, "events dropped past the bound")
        delivered_while_down = stream.stats.delivered - delivered_at_loss
        restarted = time.time()
        own_mosquitto.start()
        watcher = await Watcher(url, identifier="outage-watcher", clean=False).__aenter__()
        await until(lambda: publisher.connected, 30, "reconnected")
        await until(lambda: [m for m in watcher.on(alerts) if m.json()["wall"] > restarted],
                    30, "alerts after the outage")  # fmt: skip
    finally:
        stop.set()
        summary = await run
        await watcher.__aexit__(None, None, None)
    assert delivered_while_down >= 25  # a second of video at least: the stream went on
    assert summary.frames > 0 and publisher.reconnects == 1
    recorded = [r["frame"] for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "alert"]
    # (Counting only the second watcher's, an outage that began before any alert reached the
    # session it left behind had every dropped alert before the first one it got: "none
    # missing". The first watcher's make the block of dropped ones show.)
    got = [*first.on(alerts), *watcher.on(alerts)]
    received = {m.json()["frame"] for m in got if m.json()["state"] == "on"}
    received |= {f for f in recorded if f in _before(recorded, received)}
    missing = [i for i, frame in enumerate(recorded) if frame not in received]
    # The oldest were dropped: one block of consecutive alerts, with the newest of the
    # outage after it, held and sent once the broker was back.
    assert missing and missing == list(range(missing[0], missing[-1] + 1))
    assert len(missing) <= publisher.dropped
    held = [f for f in recorded[missing[-1] + 1 :] if f in received]
    assert held, "the alerts held while the broker was away arrived after it came back"


def _before(recorded: list[int], received: set[int]) -> set[int]:
    """The alerts before the first received one: sent before the watcher subscribed."""
    first = next((i for i, f in enumerate(recorded) if f in received), len(recorded))
    return set(recorded[:first])


@pytest.mark.slow
async def test_a_broker_that_lost_its_retained_messages_gets_the_caption_again(
    own_mosquitto, tmp_path, long_clip, tiny_encoder
):
    """A broker restarted without its persistence: discovery and statuses come back by
    themselves, and the caption, which may not change for hours, is published again."""
    once = CaptionPolicy(0.5, 1e9, 2.0)  # one caption, at the start: it never changes after
    config = RunConfig(input=f"clip={long_clip}", live=True, llm=None, captions=once,
                       outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))  # fmt: skip
    retry = RetryPolicy(initial=0.2, cap=0.5, jitter=0.0)
    publisher = MqttPublisher(MqttConfig(own_mosquitto.url(), retry=retry))
    stop, url, caption = asyncio.Event(), own_mosquitto.url(), "streamer/clip/caption"
    run = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[publisher])
    )
    try:
        async with Watcher(url) as watcher:
            await until(lambda: watcher.on(caption), 60, "the caption")
        own_mosquitto.restart_forgetting()  # its retained messages are gone
        await until(lambda: publisher.connected and publisher.reconnects == 1, 30, "back")
        async with Watcher(url) as late:
            await until(lambda: late.on(caption), 10, "the caption, retained again")
    finally:
        stop.set()
        await run
    assert late.on(caption)[-1].json()["source"] == "tags"
