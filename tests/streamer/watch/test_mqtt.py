"""MQTT and Home Assistant against a real mosquitto: what a run publishes, discovery as Home
Assistant reads it, alerts turning off, removing a stream, credentials, a broker that is away."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np
import pytest
from live_helpers import free_port
from media import read_jsonl
from mqtt_helpers import Watcher, until
from servers.mosquitto import PASSWORD, USER

from streamer import AnalysisConfig, ConfigError, OutputConfig, RunConfig, __version__, run_pipeline
from streamer.analysis.alerts import Alert, AlertCleared, AlertRule
from streamer.core.events import Observer
from streamer.core.frame import Caption
from streamer.core.retry import RetryPolicy
from streamer.sources.status import FILE_STATES, LIVE_STATES
from streamer.watch.mqtt import MqttConfig, MqttPublisher
from streamer.watch.mqtt.options import PASSWORD_ENV
from streamer.watch.web.metrics import render_metrics

# Home Assistant's discovery topic: <prefix>/<component>/[<node_id>/]<object_id>/config
DISCOVERY = re.compile(r"homeassistant/(sensor|binary_sensor|image|event)/([a-zA-Z0-9_-]+)/"
                       r"([a-zA-Z0-9_-]+)/config")  # fmt: skip
FAST = RetryPolicy(initial=0.1, cap=0.5, jitter=0.0)
RUN_ONLY = ("_status", "_dropped", "_reconnects", "_damaged")  # available with the run alone


@dataclass
class Run:
    """What an observer is given as `run`, for a publisher tested without a pipeline."""

    config: Any = None
    streams: list = field(default_factory=list)


def discovered(watcher: Watcher, node: str) -> list:
    """The discovery messages of one node (a run's prefix): the broker keeps other tests'."""
    return [m for m in watcher.under("homeassistant/") if m.topic.split("/")[2:3] == [node]]


def check_discovery(watcher: Watcher, prefix: str = "streamer") -> dict[str, dict]:
    """Every discovery config received parses as Home Assistant's MQTT schemas require; their
    templates render on the state messages received. Returns {object_id: config}."""
    configs = {}
    for message in discovered(watcher, prefix):
        if not message.payload:
            continue
        match = DISCOVERY.fullmatch(message.topic)
        assert match, message.topic
        component, object_id = match[1], match[3]
        config = message.json()
        if component in ("sensor", "binary_sensor", "event"):
            assert config["state_topic"].startswith(f"{prefix}/")  # required
        if component == "event":  # required: the types its messages' event_type may take
            assert config["event_types"] == ["fired"] and "value_template" not in config
            assert config["state_topic"].endswith("/fired")
        if component == "image":  # exactly one of image_topic, url_topic
            assert "image_topic" in config and "url_topic" not in config
            assert config["content_type"] == "image/jpeg"
        if component == "binary_sensor":
            assert {config["payload_on"], config["payload_off"]} == {"on", "off"}
        if object_id.endswith(RUN_ONLY):  # what says why a stream is not delivering
            assert config["availability_topic"] == f"{prefix}/status"
            assert "availability" not in config  # never both
        else:  # unavailable while the run is, or while the stream delivers no frames
            assert "availability_topic" not in config
            assert config["availability_mode"] == "all"
            run, stream = config["availability"]
            assert run == {"topic": f"{prefix}/status"}
            assert stream["topic"].startswith(f"{prefix}/") and stream["topic"].endswith("/status")
            available = jinja2.Template(stream["value_template"])
            for state in (*LIVE_STATES, *FILE_STATES):
                shown = available.render(value_json={"state": state})
                assert shown == ("online" if state in ("online", "playing") else "offline")
        assert config["device"]["identifiers"] and config["device"]["name"]
        assert config["origin"]["name"] == "streamer"
        assert config["device"]["sw_version"] == config["origin"]["sw_version"] == __version__
        configs[object_id] = config
    uniques = [c["unique_id"] for c in configs.values()]
    assert len(uniques) == len(set(uniques)), "unique_id must be unique"
    for config in configs.values():
        if "value_template" not in config:
            continue
        states = [m for m in watcher.on(config["state_topic"]) if m.payload]
        if states:
            rendered = jinja2.Template(config["value_template"]).render(
                value_json=states[-1].json()
            )
            assert rendered and len(rendered) <= 255, (config["unique_id"], rendered)
    return configs


class MetricsAtFinish(Observer):
    """Reads the run's /metrics exposition while the run is still up."""

    text = ""

    async def start(self, run: Any) -> None:
        self.run = run

    async def finish(self) -> None:
        self.text = render_metrics(self.run)


# ---------------------------------------------------------------------------------------------
# A whole run.


async def test_a_run_publishes_its_events_and_home_assistant_discovers_them(
    mosquitto, tmp_path, small_clip, tiny_encoder
):
    rule = AlertRule("a rabbit", threshold=-1.0, frames=1, cooldown_s=0.0)  # every analysed frame
    mqtt = MqttConfig(mosquitto.url(), status_every_s=1.0, prefix="t1")
    outputs = OutputConfig(jsonl=str(tmp_path / "a.jsonl"))
    config = RunConfig(input=f"clip={small_clip}", outputs=outputs, alerts=(rule,), mqtt=mqtt)
    metrics = MetricsAtFinish()
    async with Watcher(mosquitto.url()) as watcher:
        summary = await run_pipeline(config, encoder=tiny_encoder, observers=[metrics])
        await until(lambda: [m for m in watcher.on("t1/status") if m.payload == b"offline"],
                    what="offline at the end")  # fmt: skip
    assert summary.frames == 50
    availability = [m.payload for m in watcher.on("t1/status")]
    assert availability[0] == b"online" and availability[-1] == b"offline"

    captions = [m.json() for m in watcher.on("t1/clip/caption")]
    assert captions and all(c["text"] and c["stream"] == "clip" for c in captions)
    records = [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"].startswith("alert")]
    *recorded, cleared = records  # the file ended: nothing watches any more
    alerts = [m.json() for m in watcher.on("t1/clip/alert/a_rabbit")]
    on = [a for a in alerts if a["state"] == "on"]
    assert [a["frame"] for a in on] == [r["frame"] for r in recorded] and len(on) == 4
    assert cleared["type"] == "alert_cleared" and cleared["reason"] == "ended"
    assert cleared["pts"] >= recorded[-1]["pts"] == cleared["fired_pts"]
    assert alerts[-1]["state"] == "off" and alerts[-1]["reason"] == "ended"
    assert alerts[-1]["frame"] == cleared["frame"]
    assert alerts[-1]["time"] == pytest.approx(cleared["pts"], abs=1e-3)
    # every firing is an event too, unretained: the binary sensor was on from the first one
    fired = [m.json() for m in watcher.on("t1/clip/alert/a_rabbit/fired")]
    assert fired == [{k: v for k, v in a.items() if k != "state"} | {"event_type": "fired"}
                     for a in on]  # fmt: skip
    statuses = [m.json() for m in watcher.on("t1/clip/status")]
    assert statuses and statuses[-1]["frames"]["delivered"] == 50
    assert statuses[-1]["state"] in ("playing", "ended")
    (picture, *_) = watcher.on("t1/clip/image")
    image = cv2.imdecode(np.frombuffer(picture.payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (180, 320, 3)

    configs = check_discovery(watcher, "t1")
    assert set(configs) == {"clip_caption", "clip_status", "clip_fps", "clip_latency",
                            "clip_dropped", "clip_reconnects", "clip_damaged",
                            "clip_alert_a_rabbit", "clip_fired_a_rabbit",
                            "clip_frame"}  # fmt: skip
    assert configs["clip_fired_a_rabbit"]["name"] == "Alert fired: a rabbit"
    assert configs["clip_frame"]["image_topic"] == "t1/clip/image"
    # The counters are sensors of their own (graphs, alerts), totals as Home Assistant reads them.
    for key, value in [("dropped", statuses[-1]["frames"]["dropped"]),
                       ("reconnects", statuses[-1]["reconnects"]),
                       ("damaged", statuses[-1]["damaged"])]:  # fmt: skip
        counter = configs[f"clip_{key}"]
        assert counter["state_topic"] == "t1/clip/status"
        assert counter["state_class"] == "total_increasing"
        assert counter["unique_id"] == f"streamer_t1_clip_{key}"
        assert counter["entity_category"] == "diagnostic"
        shown = jinja2.Template(counter["value_template"]).render(value_json=statuses[-1])
        assert shown == str(value) and isinstance(value, int)
    async with Watcher(mosquitto.url()) as late:  # Home Assistant started after the run
        await until(lambda: len(late.under("homeassistant/sensor/t1/")) == 7, what="retained")
        await asyncio.sleep(0.3)
    assert all(m.retain for m in late.messages)
    assert {m.topic for m in discovered(late, "t1")} == {m.topic for m in discovered(watcher, "t1")}
    assert [m.payload for m in late.on("t1/status")] == [b"offline"]
    assert late.on("t1/clip/alert/a_rabbit/fired") == []  # an old firing is not news
    assert "streamer_mqtt_connected 1.0" in metrics.text
    published = re.search(r"streamer_mqtt_published_total (\d+)", metrics.text)
    assert published and int(float(published[1])) > 0


# ---------------------------------------------------------------------------------------------
# A publisher on its own: alerts, streams added and removed, credentials, the broker away.


def an_alert(query: str = "a dog", stream: str = "door") -> Alert:
    return Alert(stream, 3.0, time.time(), query, 0.31, 0.27, 75, "a dog on a mat")


async def started(config: MqttConfig, clock=time.monotonic, rules=()) -> MqttPublisher:
    publisher = MqttPublisher(config, clock=clock)
    await publisher.start(Run(config=Rules(tuple(rules))))
    return publisher


@dataclass
class Rules:
    """A run's configuration as far as the publisher reads it: the alert rules."""

    alerts: tuple = ()


def two_colour_clip(folder: Path, first: str, then: str) -> Path:
    """A 2-s 25-fps clip: 1 s of one solid colour, then 1 s of another."""
    out = folder / f"{first}-{then}.mp4"
    colours = [
        arg
        for colour in (first, then)
        for arg in ("-f", "lavfi", "-i", f"color=c={colour}:s=320x240:r=25:d=1")
    ]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *colours, "-filter_complex",
                    "[0][1]concat=n=2:v=1:a=0", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)  # fmt: skip
    return out


async def test_an_alert_goes_off_when_its_scene_stops_matching(mosquitto, tmp_path, tiny_encoder):
    """A clip whose first second matches the query and whose second does not: the alert fires
    in the first, clears in the second (an alert_cleared record), and its binary sensor goes
    off then, not at the end of the run."""
    query = "a red square"
    (text,) = tiny_encoder.embed_text([query])
    score = {c: float(tiny_encoder.embed(np.full((1, 240, 320, 3), rgb, np.uint8))[0] @ text)
             for c, rgb in (("red", (255, 0, 0)), ("blue", (0, 0, 255)))}  # fmt: skip
    match, miss = sorted(score, key=score.get, reverse=True)  # random weights: either way
    assert score[match] - score[miss] > 0.02, "the colours must score apart"
    threshold = (score[match] + score[miss]) / 2
    rule = AlertRule(query, threshold=threshold, frames=2, cooldown_s=0.5)
    outputs = OutputConfig(jsonl=str(tmp_path / "a.jsonl"))
    config = RunConfig(input=f"clip={two_colour_clip(tmp_path, match, miss)}", outputs=outputs,
                       alerts=(rule,), analysis=AnalysisConfig(analyze_fps=4),
                       mqtt=MqttConfig(mosquitto.url(), prefix="t2"))  # fmt: skip
    async with Watcher(mosquitto.url()) as watcher:
        await run_pipeline(config, encoder=tiny_encoder)
        await until(lambda: [m for m in watcher.on("t2/status") if m.payload == b"offline"],
                    what="offline at the end")  # fmt: skip
    records = read_jsonl(tmp_path / "a.jsonl")
    fired = [r for r in records if r["type"] == "alert"]
    (cleared,) = [r for r in records if r["type"] == "alert_cleared"]
    assert fired and all(r["pts"] < 1.0 for r in fired)
    assert cleared["pts"] >= 1.0 and cleared["fired_pts"] == fired[-1]["pts"]
    assert cleared["score"] < threshold and cleared["query"] == query
    misses = [r for r in records if r["type"] == "analysis" and r["pts"] >= 1.0]
    assert cleared["frame"] == misses[1]["frame"]  # the 2nd miss in a row, past the cooldown
    start, *states = [m.json() for m in watcher.on("t2/clip/alert/a_red_square")]
    assert (start["state"], start["reason"]) == ("off", "started")  # before the run's first
    assert [s["state"] for s in states] == ["on"] * len(fired) + ["off"]  # none at the end
    off = states[-1]
    assert off["frame"] == cleared["frame"] and off["time"] == cleared["pts"]
    assert off["cleared"] >= states[-2]["wall"] and off["query"] == query
    assert off["reason"] == cleared["reason"] == "no match"


async def test_removing_a_stream_removes_its_entities_and_retained_states(mosquitto):
    config = MqttConfig(mosquitto.url(), prefix="t3")
    publisher = await started(config)
    publisher.add_stream("door", ("a dog",))
    publisher.add_stream("yard")
    publisher.caption("door", Caption("door", 25, 1.0, "a cat", "tags"))
    publisher.alert("door", an_alert())
    async with Watcher(mosquitto.url()) as before:  # retained: it gets them however late
        configs = lambda: {m.topic for m in discovered(before, "t3")}  # noqa: E731
        await until(lambda: len(configs()) == 18 and before.on("t3/door/caption"),
                    what="10 configs of door's entities, 8 of yard's")  # fmt: skip
        assert len(discovered(before, "t3")) == 18  # each once
        door = {t for t in configs() if "/door_" in t}
        assert len(door) == 10 and "homeassistant/event/t3/door_fired_a_dog/config" in door
        publisher.remove_stream("door")
        # the alert's topic is deleted last of all (after its off, an event): wait for it too
        await until(lambda: all(m.payload == b"" for t in door for m in before.on(t)[-1:])
                    and len(before.on("t3/door/caption")) == 2
                    and len(before.fired("t3/door/alert/a_dog")) == 3,
                    what="empty configs, the alert's off and its topic deleted")  # fmt: skip
        on, off, gone = before.fired("t3/door/alert/a_dog")  # off before its topic goes
        assert (on.json()["state"], off.json()["state"], gone.payload) == ("on", "off", b"")
        assert off.json()["reason"] == "removed" and off.json()["cleared"] >= on.json()["wall"]
    await publisher.stop()
    async with Watcher(mosquitto.url()) as after:
        await until(lambda: after.under("homeassistant/sensor/t3/yard"), what="yard's configs")
        await asyncio.sleep(0.3)
        retained = {m.topic for m in after.messages if m.retain and m.payload and "t3" in m.topic}
    assert not [t for t in retained if "door" in t], "door's retained messages are gone"
    assert {t for t in retained if t.startswith("homeassistant/")} == {
        f"homeassistant/sensor/t3/yard_{k}/config"
        for k in ("caption", "status", "fps", "latency", "dropped", "reconnects", "damaged")
    } | {"homeassistant/image/t3/yard_frame/config"}


async def test_a_new_alert_set_retracts_the_dropped_queries_and_announces_the_new(mosquitto):
    """The stream API replaced door's alerts: "a dog" goes (its binary sensor and its retained
    on), "a cat" comes, on until it clears; yard's entities are untouched."""
    publisher = await started(MqttConfig(mosquitto.url(), prefix="t5"))
    publisher.add_stream("door", ("a dog",))
    publisher.add_stream("yard", ("a dog",))
    publisher.alert("door", an_alert())
    async with Watcher(mosquitto.url()) as watcher:
        topics = lambda: {m.topic for m in discovered(watcher, "t5") if m.payload}  # noqa: E731
        await until(lambda: len(topics()) == 20 and watcher.on("t5/door/alert/a_dog"),
                    what="door's and yard's entities, door's alert on")  # fmt: skip
        dog = "homeassistant/binary_sensor/t5/door_alert_a_dog/config"
        cat = "homeassistant/binary_sensor/t5/door_alert_a_cat/config"
        dog_fired = "homeassistant/event/t5/door_fired_a_dog/config"
        publisher.set_alerts("door", (AlertRule("a cat", ("door",), cooldown_s=60.0),))
        await until(lambda: watcher.on(cat) and watcher.on(dog)[-1].payload == b""
                    and watcher.on(dog_fired)[-1].payload == b""
                    and watcher.on("t5/door/alert/a_dog")[-1].payload == b"",
                    what="a dog retracted, a cat announced")  # fmt: skip
        assert watcher.on(cat)[-1].json()["name"] == "Alert: a cat"
        publisher.alert("door", an_alert("a cat"))
        await until(lambda: watcher.on("t5/door/alert/a_cat"), what="a cat on")
        publisher.alert_cleared("door", AlertCleared("door", 9.0, time.time(), "a cat", 0.1,
                                                     0.27, 100, 3.0))  # fmt: skip
        await until(lambda: len(watcher.fired("t5/door/alert/a_cat")) == 2, what="a cat off")
        assert publisher.status()["dropped"] == 0
    await publisher.stop()
    async with Watcher(mosquitto.url()) as after:
        await until(lambda: after.on(cat), what="the retained configs")
        await asyncio.sleep(0.3)
        retained = {m.topic for m in after.messages if m.retain and m.payload}
    assert dog not in retained and dog_fired not in retained and cat in retained
    assert "homeassistant/event/t5/door_fired_a_cat/config" in retained
    assert "homeassistant/binary_sensor/t5/yard_alert_a_dog/config" in retained


async def test_queries_that_differ_in_case_or_punctuation_keep_topics_of_their_own(mosquitto):
    """ "a person" and "A person!" once shared one topic and one binary sensor: one's off
    overwrote the other's on. A plain query keeps the name it always had."""
    queries = ("a person", "A person!", "a person!", "a_person", "a person at the door")
    publisher = await started(MqttConfig(mosquitto.url(), prefix="t7"))
    publisher.add_stream("door", queries)
    async with Watcher(mosquitto.url()) as watcher:
        sensors = lambda: [m.json() for m in watcher.under("homeassistant/binary_sensor/t7/")]  # noqa: E731
        await until(lambda: len(sensors()) == 5, what="a binary sensor per query")
        publisher.alert("door", an_alert("a person"))
        publisher.alert("door", an_alert("A person!"))
        publisher.alert_cleared("door", AlertCleared("door", 9.0, time.time(), "A person!", 0.1,
                                                     0.27, 100, 3.0))  # fmt: skip
        states = lambda: [m for m in watcher.fired("t7/door/alert/", under=True)  # noqa: E731
                          if not m.topic.endswith("/fired")]  # fmt: skip
        await until(lambda: len(states()) == 3, what="on, on, off")
    await publisher.stop()
    topics = {config["name"]: config["state_topic"] for config in sensors()}
    ids = {config["unique_id"] for config in sensors()}
    assert len(set(topics.values())) == len(ids) == 5
    assert topics["Alert: a person"] == "t7/door/alert/a_person"  # as before: nothing moves
    assert topics["Alert: a person at the door"] == "t7/door/alert/a_person_at_the_door"
    assert "streamer_t7_door_alert_a_person" in ids
    assert all(re.fullmatch(r"t7/door/alert/[a-z0-9_]+", t) for t in topics.values())
    states = {t: [m.json()["state"] for m in watcher.fired(t)] for t in topics.values()}
    assert states[topics["Alert: a person"]] == ["on"]
    assert states[topics["Alert: A person!"]] == ["on", "off"]


async def test_credentials_reach_the_broker_and_nothing_else(mosquitto_auth, caplog):
    wrong = MqttConfig(mosquitto_auth.url(USER, "not-the-pw"), retry=FAST, prefix="t4")
    with caplog.at_level(logging.DEBUG, logger="streamer.watch.mqtt"):
        refused = await started(wrong)
        # Named as a refused login with where to fix it, not as a broker out of reach.
        words = "refused the user and password"
        await until(lambda: words in caplog.text, what="the refusal logged")
        await asyncio.sleep(0.5)  # retried meanwhile, logged once
        assert not refused.connected and caplog.text.count(words) == 1
        assert "check them in --mqtt" in caplog.text and "cannot reach" not in caplog.text
        await refused.stop()
        right = await started(MqttConfig(mosquitto_auth.url(USER, PASSWORD), prefix="t4"))
        await until(lambda: right.connected, what="connected with the password")
        async with Watcher(mosquitto_auth.url(USER, PASSWORD)) as watcher:
            await until(lambda: watcher.on("t4/status"), what="online")
        await right.stop()
    shown = caplog.text + json.dumps([refused.status(), right.status()])
    shown += str([refused.where, right.where])
    assert "not-the-pw" not in shown and PASSWORD not in shown
    assert right.status()["broker"] == f"mqtt://***@127.0.0.1:{mosquitto_auth.port}"
    with pytest.raises(ConfigError) as bad:
        MqttConfig(f"http://{USER}:{PASSWORD}@127.0.0.1:1883")
    assert PASSWORD not in str(bad.value) and "mqtt://" in str(bad.value)


async def test_a_user_without_a_password_takes_it_from_the_environment(
    mosquitto_auth, caplog, monkeypatch
):
    """`STREAMER_MQTT_PASSWORD` keeps the password out of the command line and the files; a
    password in the URL wins over it; it is shown nowhere."""
    url = f"mqtt://{USER}@127.0.0.1:{mosquitto_auth.port}"
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with caplog.at_level(logging.DEBUG, logger="streamer.watch.mqtt"):
        without = await started(MqttConfig(url, retry=FAST, prefix="t6"))
        await until(lambda: "refused the user and password" in caplog.text, what="refused")
        assert PASSWORD_ENV in caplog.text  # the refusal says where a password may come from
        await without.stop()
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
        config = MqttConfig(url, retry=FAST, prefix="t6")
        publisher = await started(config)
        async with Watcher(mosquitto_auth.url(USER, PASSWORD)) as watcher:
            await until(lambda: publisher.connected and watcher.on("t6/status"), what="online")
        await publisher.stop()
        monkeypatch.setenv(PASSWORD_ENV, "not-the-pw")  # the URL's own password wins
        given = await started(MqttConfig(mosquitto_auth.url(USER, PASSWORD), prefix="t6"))
        await until(lambda: given.connected, what="connected with the URL's password")
        await given.stop()
    shown = caplog.text + json.dumps(publisher.status()) + repr(config) + repr(config.broker)
    assert PASSWORD not in shown and "not-the-pw" not in shown


# paho-mqtt 2.2 (under aiomqtt) leaves the socket of a failed TLS handshake to the garbage
# collector, which closes it with a ResourceWarning: one per refused attempt, never kept.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_mqtts_trusts_the_authority_given_and_no_other(mosquitto_tls, caplog):
    """TLS (mqtts://): with --mqtt-ca naming the authority that signed the broker's
    certificate the publisher connects and a TLS subscriber gets its caption; with the
    system's authorities (which never signed it) the certificate is refused and said so."""
    ca = str(mosquitto_tls.ca_file)
    assert mosquitto_tls.url().startswith("mqtts://")
    with caplog.at_level(logging.DEBUG, logger="streamer.watch.mqtt"):
        untrusted = await started(MqttConfig(mosquitto_tls.url(), retry=FAST, prefix="t6"))
        await until(lambda: "cannot reach" in caplog.text, what="the refusal logged")
        assert not untrusted.connected and "certificate verify failed" in caplog.text
        await untrusted.stop()
        trusted = await started(MqttConfig(mosquitto_tls.url(), ca_file=ca, prefix="t6"))
        async with Watcher(mosquitto_tls.url(), ca_file=ca) as watcher:
            await until(lambda: trusted.connected, what="connected over TLS")
            trusted.add_stream("door")
            trusted.caption("door", Caption("door", 1, 1.0, "a cat on the mat", "llm"))
            await until(lambda: watcher.on("t6/door/caption"), what="the caption over TLS")
        await trusted.stop()
    assert watcher.on("t6/door/caption")[0].json()["text"] == "a cat on the mat"
    assert trusted.status()["broker"] == f"mqtts://127.0.0.1:{mosquitto_tls.port}"


async def test_a_broker_that_is_away_never_blocks_the_hooks_and_drops_the_oldest(caplog):
    config = MqttConfig(f"mqtt://127.0.0.1:{free_port()}", queue=4, retry=FAST)
    publisher = await started(config)
    publisher.add_stream("door")
    begin = time.perf_counter()
    for i in range(10):
        publisher.caption("door", Caption("door", i, float(i), f"caption {i}", "tags"))
    assert time.perf_counter() - begin < 0.05  # queued, not sent
    assert publisher.dropped == 6
    waiting = [publisher._outbox.take() for _ in range(4)]
    assert [json.loads(m.payload)["text"] for m, event in waiting] == [
        f"caption {i}" for i in range(6, 10)
    ]
    await asyncio.sleep(0.5)
    assert not publisher.connected and publisher.status()["reconnects"] == 0
    begin = time.monotonic()
    await publisher.stop()
    assert time.monotonic() - begin < 5.0  # gives up on the broker within its flush time
    assert "cannot reach mqtt://127.0.0.1" in caplog.text


def test_a_missing_aiomqtt_names_the_extra_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "aiomqtt", None)  # what `import aiomqtt` finds uninstalled
    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name, *a: None if name == "aiomqtt" else object()
    )
    with pytest.raises(ConfigError, match=re.escape('pip install "aiomqtt>=')):
        MqttPublisher(MqttConfig("mqtt://127.0.0.1"))
