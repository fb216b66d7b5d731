"""A cluster run's stream API keeps what POST and PATCH set in the stream's job, so the
configuration a shard restarts the job with (after its node was lost) has every setting, and
the one-process run a shard makes of it applies them from the first frame. No Ray here: the
driver is a stand-in holding jobs; the restarted configuration runs in this process, as a
shard runs it."""

import asyncio
import dataclasses
from types import SimpleNamespace

from media import read_jsonl

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.cluster.control import ClusterControl
from streamer.cluster.coordinator import Coordinator
from streamer.cluster.driver import _ClusterRun
from streamer.cluster.jobs import plan_run
from streamer.cluster.options import ClusterConfig
from streamer.core.events import Observers
from streamer.watch.web.stream_api import parse_body


class Driver:
    """What `ClusterControl` reads of a cluster run's driver: its jobs and its config."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.stop = asyncio.Event()
        self.added: list = []

    def jobs(self) -> list:
        return list(self.added)

    def add_job(self, job) -> None:
        self.added.append(job)


def coordinator() -> Coordinator:
    """A coordinator's bookkeeping alone (no shard, no observer)."""
    made = Coordinator.__new__(Coordinator)
    made.run = SimpleNamespace(streams=[], mqtt=None)
    made.by_name = {}
    made.observers = Observers()
    return made


async def test_settings_set_by_post_and_patch_are_replayed_when_the_job_restarts(
    tmp_path, small_clip, tiny_encoder
):
    outputs = OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl"))
    config = RunConfig(input=f"yard={small_clip}", outputs=outputs, llm=None,
                       cluster=ClusterConfig("auto"))  # fmt: skip
    control = ClusterControl(Driver(config), coordinator())
    body = {"name": "door", "input": str(small_clip), "labels": "a cat, a dog"}
    await control.add(parse_body(body, "add"))
    change = {
        "analyze-fps": 1,
        "captions": "off",
        "alerts": [
            {"query": "anything", "alert-threshold": -1, "alert-frames": 1, "alert-cooldown": 0}
        ],
    }
    described = await control.change("door", parse_body(change, "change"))  # queued: no shard
    assert described["analyze_fps"] == 1.0
    (job,) = control._driver.jobs()
    restarted = job.retry()  # what the driver starts again on another node
    own = restarted.config.stream_settings["door"]
    assert own["analysis.labels"] == ("a cat", "a dog") and own["captions"] is False
    assert own["analysis.analyze_fps"] == 1.0 and [a.query for a in own["alerts"]] == ["anything"]

    await run_pipeline(dataclasses.replace(restarted.config, cluster=None), encoder=tiny_encoder)
    rows = read_jsonl(tmp_path / "door.jsonl")
    analysed = [r for r in rows if r["type"] == "analysis"]
    assert [r["pts"] for r in analysed] == [0.0, 1.0]
    assert {t["label"] for r in analysed for t in r["tags"]} <= {"a cat", "a dog"}
    assert len([r for r in rows if r["type"] == "alert"]) == 2
    assert not [r for r in rows if r["type"] == "caption"]


async def test_the_coordinator_announces_a_streams_own_alerts_to_mqtt(small_clip):
    """A [[sources]] entry's whole set of alerts is what MQTT announces for that stream."""
    spec = parse_body({"alerts": ["a fox"]}, "change").settings["alerts"]
    config = RunConfig(input=(f"door={small_clip}", f"yard={small_clip}"), llm=None,
                       outputs=OutputConfig(jsonl="{stream}.jsonl"),
                       stream_settings={"door": {"alerts": spec}})  # fmt: skip
    announced = []
    made = coordinator()
    made.run = SimpleNamespace(
        config=config,
        streams=[],
        mqtt=SimpleNamespace(
            set_alerts=lambda name, rules: announced.append((name, [r.query for r in rules]))
        ),
    )
    await made.start()
    assert announced == [("door", ["a fox"])]


async def test_a_removal_its_shard_does_not_finish_in_time_is_cancelled_and_says_so(
    monkeypatch, small_clip
):
    """DELETE on a cluster run waits for the shard as one process waits for a stream,
    `REMOVE_TIMEOUT_S`: a shard that does not answer has its run cancelled, and the answer
    says so. The driver's own `remove_job`, its shard a stand-in that never answers."""
    monkeypatch.setattr("streamer.control.REMOVE_TIMEOUT_S", 0.2)
    cancelled: list = []
    monkeypatch.setattr("streamer.cluster.driver._cancel", cancelled.append)
    config = RunConfig(input=f"door={small_clip}", llm=None, cluster=ClusterConfig("auto"),
                       outputs=OutputConfig(jsonl="{stream}.jsonl"))  # fmt: skip
    driver = _ClusterRun.__new__(_ClusterRun)  # no Ray: the bookkeeping remove_job reads
    driver.plan, driver.stop, driver.removed = plan_run(config), asyncio.Event(), set()
    driver.waiting_live, driver.queued = [], []
    (job,) = driver.plan.jobs
    stops: list = []
    job.shard = SimpleNamespace(
        handle=SimpleNamespace(stop_job=SimpleNamespace(remote=stops.append))
    )
    hung = asyncio.create_task(asyncio.Event().wait())  # its run on the shard: never ends
    driver.running, driver.refs = {hung: job}, {hung: "the run's Ray call"}
    answer = await ClusterControl(driver, coordinator()).remove("door")
    assert stops == ["door"] and cancelled == ["the run's Ray call"] and hung.cancelled()
    assert "did not finish it within 0.2 s" in answer["cancelled"] and "frames" not in answer
    assert driver.jobs() == [] and driver.removed == {"door"}  # `_collect` takes the task in
