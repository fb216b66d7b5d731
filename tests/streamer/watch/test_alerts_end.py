"""Alerts still on when their stream ends go off, once, on every surface that heard them fire:
the JSON Lines, MQTT (a real mosquitto), the webhook (a real receiver) and the observers (the
web viewer's events), each with the reason ("stopped", "removed"; a file's end: test_mqtt)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from media import read_jsonl
from mqtt_helpers import Watcher, until
from webhook_receiver import Receiver

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.analysis.alerts import AlertRule
from streamer.core.events import Observer
from streamer.watch.mqtt import MqttConfig
from streamer.watch.web.stream_body import AlertSpec, StreamRequest

pytestmark = pytest.mark.integration

# Every frame matches, and the cooldown outlasts the test: it fires once and stays on.
ALWAYS = AlertRule("anything", threshold=-1.0, frames=1, cooldown_s=600.0)


class Seen(Observer):
    """Keeps the run and what its alerts did, as the web viewer's events are told it."""

    def __init__(self) -> None:
        self.run: Any = None
        self.fired: list = []
        self.cleared: list = []

    async def start(self, run: Any) -> None:
        self.run = run

    def alert(self, stream: str, alert: Any) -> None:
        self.fired.append(alert)

    def alert_cleared(self, stream: str, cleared: Any) -> None:
        self.cleared.append(cleared)


def alert_records(path) -> list[dict]:
    return [r for r in read_jsonl(path) if r["type"] in ("alert", "alert_cleared")]


async def test_alerts_on_when_a_live_run_stops_go_off_as_stopped_everywhere(
    mosquitto, tmp_path, long_clip, tiny_encoder
):
    seen, stop = Seen(), asyncio.Event()
    async with Receiver() as receiver, Watcher(mosquitto.url()) as watcher:
        config = RunConfig(input=f"cam={long_clip}", live=True, alerts=(ALWAYS,),
                           outputs=OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl")),
                           mqtt=MqttConfig(mosquitto.url(), prefix="end1"),
                           webhook=receiver.url)  # fmt: skip
        task = asyncio.create_task(
            run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[seen])
        )
        try:
            await until(lambda: seen.fired or task.done(), 30, "an alert")
        finally:
            stop.set()
        await asyncio.wait_for(task, 30)
        await until(lambda: [m for m in watcher.on("end1/status") if m.payload == b"offline"],
                    what="offline at the end")  # fmt: skip
    fired, cleared = alert_records(tmp_path / "cam.jsonl")  # one each: on, then off at the stop
    assert fired["type"] == "alert" and cleared["type"] == "alert_cleared"
    assert cleared["reason"] == "stopped" and cleared["query"] == "anything"
    assert cleared["fired_pts"] == fired["pts"] <= cleared["pts"] and cleared["score"] is None
    on, off = [m.json() for m in watcher.fired("end1/cam/alert/anything")]
    assert (on["state"], off["state"]) == ("on", "off")
    assert off["reason"] == "stopped" and off["cleared"] >= on["wall"]
    assert off["frame"] == cleared["frame"] and off["time"] == pytest.approx(
        cleared["pts"], abs=1e-3
    )
    assert [p["type"] for p in receiver.payloads] == ["alert", "alert_cleared"]
    assert receiver.payloads[-1]["reason"] == "stopped"
    assert [c.reason for c in seen.cleared] == ["stopped"]


async def test_a_removed_streams_alerts_go_off_as_removed_before_its_entities_go(
    mosquitto, tmp_path, long_clip, tiny_encoder
):
    """Removed through the stream API (its control) while its alert is on: its JSON Lines end
    with the alert cleared, MQTT says off before it empties the alert's retained topic, and
    the other stream runs on."""
    seen, stop = Seen(), asyncio.Event()
    rule = AlertRule("anything", ("door",), threshold=-1.0, frames=1, cooldown_s=600.0)
    async with Watcher(mosquitto.url()) as watcher:
        outputs = OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl"))
        config = RunConfig(input=(f"door={long_clip}", f"yard={long_clip}"), live=True,
                           alerts=(rule,), mqtt=MqttConfig(mosquitto.url(), prefix="end2"),
                           outputs=outputs)  # fmt: skip
        task = asyncio.create_task(
            run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[seen])
        )
        try:
            await until(lambda: seen.fired or task.done(), 30, "an alert")
            summary = await seen.run.control.remove("door")
            assert summary["name"] == "door" and not task.done()
            topic = "end2/door/alert/anything"
            await until(lambda: [m for m in watcher.on(topic) if not m.payload], what="emptied")
        finally:
            stop.set()
        await asyncio.wait_for(task, 30)
    records = alert_records(tmp_path / "door.jsonl")
    assert [r["type"] for r in records] == ["alert", "alert_cleared"]
    assert records[-1]["reason"] == "removed"
    on, off, gone = watcher.fired(topic)
    assert (on.json()["state"], off.json()["state"], gone.payload) == ("on", "off", b"")
    assert off.json()["reason"] == "removed" and off.json()["frame"] == records[-1]["frame"]
    assert [c.reason for c in seen.cleared] == ["removed"]
    assert not alert_records(tmp_path / "yard.jsonl")  # its alert watches door only


async def test_an_alert_a_change_drops_goes_off_as_removed_and_a_kept_one_stays_on(
    tmp_path, long_clip, tiny_encoder
):
    """Its stream's alerts replaced through the stream API while two are on: the one dropped
    clears ("removed") on the JSON Lines and the events; the one kept stays on, not fired
    again. Only MQTT used to say the dropped one went off."""
    seen, stop = Seen(), asyncio.Event()
    rules = tuple(AlertRule(q, ("door",), threshold=-1.0, frames=1, cooldown_s=600.0)
                  for q in ("anything", "something"))  # fmt: skip
    config = RunConfig(input=f"door={long_clip}", live=True, alerts=rules,
                       outputs=OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl")))  # fmt: skip
    task = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[seen])
    )
    try:
        await until(lambda: len(seen.fired) >= 2 or task.done(), 30, "both alerts")
        keep = AlertSpec("something", {"threshold": -1.0, "frames": 1, "cooldown_s": 600.0})
        await seen.run.control.change("door", StreamRequest(settings={"alerts": (keep,)}))
        await asyncio.sleep(1.0)  # frames go on: the kept alert is not fired again
    finally:
        stop.set()
    await asyncio.wait_for(task, 30)
    found = alert_records(tmp_path / "door.jsonl")
    records = [(r["type"], r["query"], r.get("reason")) for r in found]
    assert sorted(records[:2]) == [("alert", "anything", None), ("alert", "something", None)]
    assert records[2:] == [("alert_cleared", "anything", "removed"),
                           ("alert_cleared", "something", "stopped")]  # fmt: skip
    assert [(c.query, c.reason) for c in seen.cleared] == [("anything", "removed"),
                                                          ("something", "stopped")]  # fmt: skip
