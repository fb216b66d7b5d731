"""`run_cluster` on a simulated two-node Ray cluster: the outputs one process writes, faults.

Each cluster is real Ray (`ray.cluster_utils.Cluster`: a raylet and workers per node on this
machine, each node with its own CPUs and custom resources). Files are real clips, live streams
come from the real RTSP server of the test helpers, and faults are real: a replica's process
killed with SIGKILL, a node removed (its raylet and workers killed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
import ray
from media import ffprobe, read_jsonl, same_records
from ray.cluster_utils import Cluster
from servers.llm_server import llm_server  # noqa: F401  (session fixture)
from servers.mosquitto import mosquitto  # noqa: F401  (session fixture)
from webhook_receiver import Receiver

from bench.harness.rtsp import free_port
from streamer.analysis.alerts import AlertRule
from streamer.analysis.captioner import CaptionPolicy
from streamer.analysis.worker import EncoderChoice
from streamer.archive import Archive
from streamer.archive.options import ArchiveConfig
from streamer.cluster.driver import run_cluster
from streamer.cluster.options import ClusterConfig, Pin
from streamer.cluster.placement import REPLICA_PREFIX
from streamer.config import RunConfig, ServeConfig
from streamer.core import startup
from streamer.llm import LlmConfig
from streamer.outputs.options import OutputConfig
from streamer.pipeline import run_pipeline
from streamer.watch.mqtt import MqttConfig

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
TINY = EncoderChoice(kind="clip", model="tiny", weights="random", device="cpu")


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each; the second has the custom resource `door-cam`."""
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = made.add_node(num_cpus=1, resources={"door-cam": 1})
    ray.init(address=made.address, namespace="streamer", logging_level=logging.WARNING)
    yield made, worker
    ray.shutdown()
    made.shutdown()


def _config(inputs, out: Path, cluster: ClusterConfig | None = None, **outputs) -> RunConfig:
    out.mkdir(parents=True, exist_ok=True)
    return RunConfig(
        input=tuple(str(i) for i in inputs),
        outputs=OutputConfig(jsonl=str(out / "{stream}.jsonl"), **outputs),
        encoder=TINY, llm=None, cluster=cluster,
    )  # fmt: skip


def _one_process(inputs, out: Path, **outputs):
    return asyncio.run(run_pipeline(_config(inputs, out, **outputs)))


def _analysed(jsonl: Path) -> int:
    """Analysis records a stream's JSON Lines holds so far (complete lines only)."""
    if not jsonl.exists():
        return 0
    lines = jsonl.read_text().splitlines(keepends=True)
    return sum(1 for line in lines if line.endswith("\n") and '"type": "analysis"' in line)


def _pids(title: str) -> list[int]:
    """Processes whose command line holds `title` (Ray titles an actor's process
    `ray::ClassName...`)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if title.encode() in cmdline:
            found.append(int(entry))
    return found


def test_a_file_list_writes_what_one_process_writes(cluster, clips, tmp_path, monkeypatch):
    """Files spread over two shards and two replicas: every record of every output is the
    one-process run's (same tags and captions; scores within one rounding step, as two
    replicas batch frames otherwise than one process: CI saw a fourth decimal flip), every
    frame written. `--profile-startup` gives the driver's phases up to the first analysis."""
    monkeypatch.setattr(startup, "_RECORDER", startup.Recorder())  # this run's phases alone
    profiles: list[list[str]] = []
    startup.enable(lambda recorder: profiles.append([s.name for s in recorder.spans()]))
    subtitles = {"srt": str(tmp_path / "c" / "{stream}.srt")}
    spread = ClusterConfig("auto", encoders=2, files_per_shard=1)
    summary = asyncio.run(run_cluster(_config(clips, tmp_path / "c", spread, **subtitles)))
    assert profiles == [["cluster join", "replicas and shards", "first job sent",
                         startup.LAST]]  # fmt: skip
    one = _one_process(clips, tmp_path / "one", srt=str(tmp_path / "one" / "{stream}.srt"))
    assert [s.name for s in summary.streams] == ["a", "b", "c", "d"]
    assert summary.frames == one.frames and summary.analysed == one.analysed
    assert not summary.interrupted and summary.incomplete is None
    for name in "abcd":
        ours, theirs = tmp_path / "c" / f"{name}.jsonl", tmp_path / "one" / f"{name}.jsonl"
        assert read_jsonl(ours), name
        same_records(ours, theirs)
        srt = (tmp_path / "c" / f"{name}.srt").read_text()
        assert srt == (tmp_path / "one" / f"{name}.srt").read_text()


def test_a_replica_killed_mid_run_loses_no_file_frame(cluster, clips, tmp_path):
    """SIGKILL one of two replicas while files run: its frames go once to the other, every
    output is still the one-process run's (test_cluster_faults: Ray starts the replica again)."""
    spread = ClusterConfig("auto", encoders=2, files_per_shard=2)
    config = _config(clips, tmp_path / "c", spread)

    async def run_and_kill():
        task = asyncio.create_task(run_cluster(config))
        first = tmp_path / "c" / "a.jsonl"
        while not (first.exists() and first.stat().st_size > 0):
            assert not task.done(), "the run ended before a replica could be killed"
            await asyncio.sleep(0.05)
        names = sorted(n for n in ray.util.list_named_actors() if n.startswith(REPLICA_PREFIX))
        assert len(names) == 2, names  # this run's replicas (not another run's on the machine)
        victim = await ray.get_actor(names[0]).stats.remote()
        os.kill(victim.pid, signal.SIGKILL)
        summary = await task
        return summary, victim.pid

    summary, _ = asyncio.run(run_and_kill())
    one = _one_process(clips, tmp_path / "one")
    assert summary.frames == one.frames and summary.incomplete is None
    for name in "abcd":
        same_records(tmp_path / "c" / f"{name}.jsonl", tmp_path / "one" / f"{name}.jsonl")


def test_live_streams_spread_and_pinned(cluster, rtsp_server, tmp_path, caplog, capsys):
    """Two RTSP cameras: the one pinned to `door-cam` runs on the node that has it, the other
    on the other node; both are analysed until the run is stopped. The console shows the
    live status table (its first one stopped the coordinator's reading once)."""
    _, worker = cluster
    inputs = [f"door={rtsp_server.url('cam1')}", f"yard={rtsp_server.url('cam2')}"]
    pinned = ClusterConfig("auto", pins=(Pin("door", resource="door-cam"),))
    config = dataclasses.replace(_config(inputs, tmp_path / "live", pinned), status_every=0.5)

    async def run_until_analysed():
        stop = asyncio.Event()
        task = asyncio.create_task(run_cluster(config, stop=stop, progress=True))
        deadline = time.monotonic() + 90
        while not all(_analysed(tmp_path / "live" / f"{n}.jsonl") >= 3 for n in ("door", "yard")):
            assert not task.done() and time.monotonic() < deadline, "the streams were not analysed"
            await asyncio.sleep(0.2)
        stop.set()
        return await task

    with caplog.at_level(logging.INFO, logger="streamer"):
        summary = asyncio.run(run_until_analysed())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    tables = capsys.readouterr().err.count("p50 ms")
    assert tables >= 2, "no live status table on the console"
    placed = {r.getMessage().split()[1]: r.getMessage() for r in caplog.records if "→" in r.msg}
    assert worker.node_id[:6] in placed["door"]
    assert worker.node_id[:6] not in placed["yard"]
    assert summary.interrupted
    for name in ("door", "yard"):
        stream = next(s for s in summary.streams if s.name == name)
        assert stream.frames > 0 and stream.analysed >= 3, stream


CAPTIONS = CaptionPolicy(min_interval=30.0, max_age=30.0)  # one caption per 8-s clip, at 0 s


def test_captions_and_summaries_come_from_the_coordinator_s_one_llm_client(
    cluster,
    clips,
    tmp_path,
    caplog,
    llm_server,  # noqa: F811
):
    """With --llm-url, two files on two nodes get the real server's captions, the ones one
    process writes; the server is probed once, by the desk on the driver's node, not by each
    shard. With --archive --summary each file's
    summary (asked through the desk) is in its JSON Lines, its chapters are written, and the
    coordinator stored both in the archive."""
    llm = LlmConfig(url=llm_server.url, temperature=0.0, read_timeout=60.0)
    spread = ClusterConfig("auto", files_per_shard=1)

    def config(out: Path, where: ClusterConfig | None) -> RunConfig:
        made = _config(clips[:2], out, where, srt=str(out / "{stream}.srt"))
        made = dataclasses.replace(made, llm=llm, captions=CAPTIONS, caption_wait=180.0)
        if where is None:
            return made  # captions only: the one-process run they are compared with
        archive = ArchiveConfig(str(out / "arch"), index_every_s=2.0, summary=True)
        return dataclasses.replace(made, archive=archive)

    with caplog.at_level(logging.INFO, logger="streamer"):
        asyncio.run(run_cluster(config(tmp_path / "c", spread)))
    probed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LLM: ")]
    assert len(probed) == 1 and llm_server.model in probed[0], probed
    (desk,) = [r.getMessage() for r in caplog.records if "LLM desk runs on" in r.getMessage()]
    # On the driver's node: the raylet this process joined (on one machine with two simulated
    # nodes, either may be it).
    assert f"/{ray.get_runtime_context().get_node_id()[:6]}:" in desk, desk
    asyncio.run(run_pipeline(config(tmp_path / "one", None)))
    # Each file's summary was made on its node (its JSON Lines has it) and reached the
    # coordinator, the archive's one writer, through the relay.
    written = {
        name: [r for r in read_jsonl(tmp_path / "c" / f"{name}.jsonl") if r["type"] == "summary"]
        for name in "ab"
    }
    assert all(len(records) == 1 for records in written.values()), written
    stored = {s.stream: s for s in Archive(tmp_path / "c" / "arch").summaries()}
    assert sorted(stored) == ["a", "b"]
    assert all(stored[name].text == written[name][0]["text"] for name in "ab"), stored
    for name in "ab":
        ours = read_jsonl(tmp_path / "c" / f"{name}.jsonl")
        one = read_jsonl(tmp_path / "one" / f"{name}.jsonl")
        captions = [r for r in ours if r["type"] == "caption"]
        assert [c["source"] for c in captions] == ["llm"], captions
        assert captions == [r for r in one if r["type"] == "caption"]
        assert (tmp_path / "c" / f"{name}.srt").read_text() == (
            tmp_path / "one" / f"{name}.srt"
        ).read_text()
        (summary,) = [r for r in ours if r["type"] == "summary"]
        assert summary["kind"] == "file" and summary["text"] == stored[name].text
        assert stored[name].model == llm_server.model
        assert (tmp_path / "c" / "arch" / "chapters" / f"{name}.chapters.vtt").read_text()


def test_a_file_run_whose_llm_is_away_captions_from_tags(cluster, clips, tmp_path, caplog):
    """--llm-url of a server that is not there, files only: the driver says so once and every
    caption comes from the tags, as in one process; no shard tries the server itself."""
    llm = LlmConfig(url=f"http://127.0.0.1:{free_port()}/v1", read_timeout=5.0)
    made = _config(clips[:2], tmp_path, ClusterConfig("auto", files_per_shard=1))
    config = dataclasses.replace(made, llm=llm, captions=CAPTIONS)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="streamer"):
        summary = asyncio.run(run_cluster(config))
    assert time.monotonic() - started < 120
    warned = [r.getMessage() for r in caplog.records if "no LLM captions" in r.getMessage()]
    assert len(warned) == 1 and "captions come from the tags" in warned[0], warned
    for name in "ab":
        captions = [r for r in read_jsonl(tmp_path / f"{name}.jsonl") if r["type"] == "caption"]
        assert captions and {c["source"] for c in captions} == {"tags"}, captions
    assert summary.frames > 0 and not summary.interrupted


def test_stop_finishes_every_output(cluster, clips, tmp_path):
    """Stopped mid-run (Ctrl-C): the files being written end as valid outputs."""
    video = {"video": str(tmp_path / "s" / "{stream}.mp4")}
    config = _config(clips, tmp_path / "s", ClusterConfig("auto", files_per_shard=1), **video)

    async def stop_early():
        stop = asyncio.Event()
        task = asyncio.create_task(run_cluster(config, stop=stop))
        first = tmp_path / "s" / "a.jsonl"
        while not (first.exists() and first.stat().st_size > 0):
            await asyncio.sleep(0.05)
        stop.set()
        return await task

    started = time.monotonic()
    summary = asyncio.run(stop_early())
    assert time.monotonic() - started < 60
    assert summary.interrupted
    written = [s for s in summary.streams if s.frames]
    assert written, summary
    for stream in written:
        info = ffprobe(tmp_path / "s" / f"{stream.name}.mp4", "-count_frames")
        assert int(info["streams"][0]["nb_read_frames"]) == stream.frames


def test_the_coordinator_serves_every_stream_of_every_node(cluster, rtsp_server, tmp_path):
    """With --serve and --webhook on a cluster, the driver's viewer shows both streams (each
    with its node), /metrics labels them by node, the video of a stream on the other node
    plays, and the alerts of both nodes reach the webhook from the coordinator."""
    _, worker = cluster
    port = free_port()
    inputs = [f"door={rtsp_server.url('cam1')}", f"yard={rtsp_server.url('cam2')}"]

    async def scenario():
        async with Receiver() as hook:
            config = dataclasses.replace(
                _config(inputs, tmp_path / "web",
                        ClusterConfig("auto", pins=(Pin("door", resource="door-cam"),))),
                serve=ServeConfig(port=port), webhook=hook.url,
                alerts=(AlertRule("anything at all", threshold=-1.0, cooldown_s=1.0),),
            )  # fmt: skip
            stop = asyncio.Event()
            task = asyncio.create_task(run_cluster(config, stop=stop))
            try:
                return await _look_at_the_viewer(port, task, hook), hook.payloads
            finally:
                stop.set()
                await task

    (status, metrics, jpeg), payloads = asyncio.run(scenario())
    nodes = {s["name"]: s["node"] for s in status["streams"]}
    assert worker.node_id[:6] in nodes["door"] and worker.node_id[:6] not in nodes["yard"]
    for name in ("door", "yard"):
        assert f'streamer_frames_analysed_total{{node="{nodes[name]}",stream="{name}"}}' in metrics
    assert jpeg.startswith(b"\xff\xd8")  # door's video, decoded on the other node
    assert {p["stream"] for p in payloads} == {"door", "yard"}


async def _look_at_the_viewer(port: int, task: asyncio.Task, hook) -> tuple[dict, str, bytes]:
    """Poll the viewer until both streams are analysed and both have alerted; then read
    /metrics and one frame of door's MJPEG."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession() as http:
        while True:
            assert not task.done() and time.monotonic() < deadline, "the viewer never showed both"
            await asyncio.sleep(0.5)
            try:
                async with http.get(f"{base}/api/status") as answer:
                    status = await answer.json()
            except aiohttp.ClientError:
                continue  # not listening yet: the pool is still loading
            analysed = all(s["frames"]["analysed"] > 2 for s in status["streams"])
            if analysed and len({p["stream"] for p in hook.payloads}) == 2:
                break
        async with http.get(f"{base}/metrics") as answer:
            metrics = await answer.text()
        async with http.get(f"{base}/streams/door/mjpeg") as answer:
            jpeg = b""
            while b"\xff\xd9" not in jpeg:  # the end of the first JPEG
                jpeg += await answer.content.readany()
            jpeg = jpeg[jpeg.index(b"\xff\xd8") :]
    return status, metrics, jpeg


def test_the_archive_of_a_cluster_run_has_every_node_s_moments(
    cluster, clips, rtsp_server, tmp_path, monkeypatch
):
    """--archive on a cluster, with relative paths as a user types them: the live stream is
    recorded on its node, the coordinator indexes the moments of every stream (files and live)
    into the one index; outputs land where the paths say. An alert that fires on every stream
    gets its clip cut by the coordinator: the file's from the file, the live stream's from
    the recording its node wrote; the recording's state reaches the coordinator's status."""
    monkeypatch.chdir(tmp_path)
    for clip in clips[:2]:
        (tmp_path / clip.name).write_bytes(clip.read_bytes())
    everything = AlertRule("anything at all", threshold=-1.0, cooldown_s=60.0)
    config = RunConfig(
        input=("a.mp4", "b.mp4", f"door={rtsp_server.url('cam1')}"),
        outputs=OutputConfig(jsonl="out/{stream}.jsonl"), encoder=TINY, llm=None,
        archive=ArchiveConfig("arch", segment_s=2.0, index_every_s=1.0, clip_before_s=1.0,
                              clip_after_s=1.0),
        cluster=ClusterConfig("auto", pins=(Pin("door", resource="door-cam"),)),
        alerts=(everything,),
    )  # fmt: skip
    port = free_port()
    config = dataclasses.replace(config, serve=ServeConfig(port=port))
    seen: dict = {}

    async def recordings() -> None:
        """What the coordinator's /api/status says of the recordings, as the run goes."""
        async with aiohttp.ClientSession() as http:
            while True:
                await asyncio.sleep(0.5)
                try:
                    async with http.get(f"http://127.0.0.1:{port}/api/status") as answer:
                        archive = (await answer.json())["archive"]
                except aiohttp.ClientError:
                    continue  # not listening yet
                seen.update((archive or {}).get("recordings") or {})

    (tmp_path / "out").mkdir()

    async def run_until_files_done():
        stop = asyncio.Event()
        task = asyncio.create_task(run_cluster(config, stop=stop))
        looking = asyncio.create_task(recordings())
        deadline = time.monotonic() + 120
        while not all(_analysed(tmp_path / "out" / f"{n}.jsonl") >= 3 for n in ("a", "b", "door")):
            assert not task.done() and time.monotonic() < deadline, "not every stream ran"
            await asyncio.sleep(0.2)
        await asyncio.sleep(5.0)  # a few of door's segments and moments; the files end
        looking.cancel()
        stop.set()
        return await task

    summary = asyncio.run(run_until_files_done())
    assert {s.name for s in summary.streams} == {"a", "b", "door"}
    info = Archive(tmp_path / "arch").info()
    rows = {s.stream: s.rows for s in info.streams}
    assert rows.keys() == {"a", "b", "door"} and all(rows.values()), rows
    assert info.recordings_bytes > 0  # door, recorded on its node
    assert seen.get("door", {}).get("state") == "recording", seen
    made = read_jsonl(tmp_path / "arch" / "clips" / "clips.jsonl")
    written = {r["stream"]: r for r in made if r["state"] == "written"}
    assert {"a", "b", "door"} <= written.keys(), made
    for record in written.values():
        clip = tmp_path / "arch" / record["clip"]
        assert int(ffprobe(clip, "-count_frames")["streams"][0]["nb_read_frames"]) > 0
    # Each stream's JSON Lines, written on its node as the alert fired, names that clip (the
    # shard names it by the rule one process uses; the coordinator cut it under that name).
    for name in ("a", "b", "door"):
        fired = [r for r in read_jsonl(tmp_path / "out" / f"{name}.jsonl") if r["type"] == "alert"]
        assert len(fired) == 1 and fired[0].get("clip") == written[name]["clip"], (name, fired)


@pytest.mark.parametrize(("stop", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_on_the_command_line_finishes_every_output(cluster, clips, tmp_path, stop, code):
    """`streamer run --cluster auto` as a user runs it, interrupted with Ctrl-C (SIGINT) or
    SIGTERM (systemd, `docker stop`) while its shards write: exit 130 or 143, every video
    written plays to its last frame, and none of the run's actors is left behind (SIGTERM was
    a crash once: Ray's stack dump and an abort, exit 134)."""
    made, _ = cluster
    out = tmp_path / "cli"
    out.mkdir()
    args = [sys.executable, "-m", "streamer", "run", "--cluster", "auto", *map(str, clips),
            "-o", str(out / "{stream}.mp4"), "--jsonl", str(out / "{stream}.jsonl"),
            "--encoder", "clip", "--model", "tiny", "--weights", "random", "--no-llm",
            "--files-per-shard", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": made.address, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _analysed(out / "a.jsonl") < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the run never got going"
        time.sleep(0.1)
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == code, stderr
    assert "stopped early" in stderr and "Traceback" not in stderr, stderr
    assert "SIGTERM received" not in stderr, stderr
    videos = sorted(out.glob("*.mp4"))
    assert videos, stderr
    for video in videos:
        frames = int(ffprobe(video, "-count_frames")["streams"][0]["nb_read_frames"])
        assert frames > 0, video
    assert not _pids("ray::Shard"), "a shard outlived its run"


def _gaps(rows: list[dict]) -> float:
    """The median stream time between consecutive analysed frames of `rows`: the rate asked
    for shows there; wall-clock gaps do not (a shard catching up after the stream opens
    analyses a burst of frames a second apart in stream time within a fraction of a second)."""
    times = sorted(r["pts"] for r in rows)
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return gaps[len(gaps) // 2]


def test_the_stream_api_adds_changes_and_removes_streams_of_a_cluster_run(
    cluster,
    rtsp_server,
    mosquitto,  # noqa: F811
    tmp_path,
):
    """The viewer's stream API on a cluster run: a camera added over HTTP is placed by its
    pin (on the door-cam node) and analysed at the rate asked; PATCH changes the rate on its
    shard; DELETE stops it there, its JSON Lines ends on a whole record and its summary comes
    back; a name in use is refused; the run's own stream never stops. With --mqtt (a real
    mosquitto) the coordinator publishes the remote streams' states, and the added stream's
    Home Assistant entities appear with it and are cleared when it goes."""
    _, worker = cluster
    out, port = tmp_path / "live", free_port()
    pinned = ClusterConfig("auto", pins=(Pin("door", resource="door-cam"),))
    config = dataclasses.replace(
        _config([f"yard={rtsp_server.url('cam2')}"], out),
        serve=ServeConfig(port=port, token="t0k"),
        cluster=pinned,
        mqtt=MqttConfig(mosquitto.url(), prefix="cl", status_every_s=1.0),
    )  # a pin for a stream the API will add: allowed with the API on
    api = f"http://127.0.0.1:{port}/api/streams"
    seen: dict = {}
    heard: list[tuple[str, bytes]] = []

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe("cl/#")
            await client.subscribe("homeassistant/+/+/door_caption/config")
            async for message in client.messages:
                heard.append((message.topic.value, bytes(message.payload or b"")))

    async def until(check, task: asyncio.Task, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            assert not task.done() and time.monotonic() < deadline, "not in time"
            await asyncio.sleep(0.2)

    async def call(http, method: str, url: str, status: int, body=None) -> dict:
        async with http.request(method, url, json=body) as answer:
            assert answer.status == status, await answer.text()
            return await answer.json()

    async def scenario():
        stop = asyncio.Event()
        listening = asyncio.create_task(listen())
        task = asyncio.create_task(run_cluster(config, stop=stop))
        door = {"name": "door", "input": rtsp_server.url("cam1"), "analyze-fps": 1}
        try:
            await until(lambda: _analysed(out / "yard.jsonl") >= 3, task, 90)
            async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0k"}) as http:
                seen["added"] = await call(http, "POST", api, 201, door)
                await until(lambda: _analysed(out / "door.jsonl") >= 4, task, 60)
                seen["listed"] = (await call(http, "GET", api, 200))["streams"]
                await call(http, "PATCH", f"{api}/door", 200, {"analyze-fps": 4})
                seen["changed"] = time.time()
                await asyncio.sleep(4.0)
                seen["removed"] = await call(http, "DELETE", f"{api}/door", 200)
                seen["gone"] = time.time()
                await call(http, "POST", api, 409, {"name": "yard", "input": door["input"]})
                await asyncio.sleep(2.0)
        finally:
            stop.set()
        try:
            return await task
        finally:
            listening.cancel()

    summary = asyncio.run(scenario())
    assert seen["added"]["name"] == "door" and seen["added"]["analyze_fps"] == 1
    listed = {s["name"]: s for s in seen["listed"]}
    assert list(listed) == ["yard", "door"] and worker.node_id[:6] in listed["door"]["node"]
    rows = [r for r in read_jsonl(out / "door.jsonl") if r["type"] == "analysis"]
    before = [r for r in rows if r["wall"] < seen["changed"]]
    after = [r for r in rows if r["wall"] > seen["changed"] + 1.0]
    assert len(before) >= 4 and len(after) >= 4, (len(before), len(after))
    assert _gaps(after) < 0.6 * _gaps(before), (_gaps(before), _gaps(after))
    assert (out / "door.jsonl").read_text().endswith("\n")
    assert all(r["wall"] < seen["gone"] for r in rows)
    assert seen["removed"]["name"] == "door" and seen["removed"]["analysed"] >= len(rows) > 0
    assert [s.name for s in summary.streams] == ["yard"]
    yard = [r for r in read_jsonl(out / "yard.jsonl") if r["type"] == "analysis"]
    assert any(r["wall"] > seen["gone"] for r in yard)
    states = {t: json.loads(p) for t, p in heard if t in ("cl/yard/status", "cl/door/status") and p}
    assert {"cl/yard/status", "cl/door/status"} <= states.keys(), sorted({t for t, _ in heard})
    door_config = [p for t, p in heard if t.endswith("/door_caption/config")]
    assert door_config and door_config[0] and door_config[-1] == b"", door_config[:1]


@ray.remote(num_cpus=1)
class _Hog:
    """Holds one CPU of the cluster (another run's replica, as far as a new run can tell)."""

    def ping(self) -> int:
        return 1


def test_a_stop_while_the_replicas_wait_for_cpus_ends_the_run_at_once(
    cluster, clips, tmp_path, caplog, monkeypatch
):
    # Both CPUs held: the run's replica waits. Ctrl-C was ignored there (up to 600 s), and
    # nothing said what it waited for.
    monkeypatch.setattr("streamer.cluster.placement.SLOW_LOAD_S", 1.0)
    hogs = [_Hog.remote() for _ in range(2)]
    ray.get([hog.ping.remote() for hog in hogs])
    config = _config(clips[:1], tmp_path / "waiting", ClusterConfig("auto"))

    async def stopped_while_waiting():
        stop = asyncio.Event()
        task = asyncio.create_task(run_cluster(config, stop=stop))
        await asyncio.sleep(3.0)
        assert not task.done()
        stop.set()
        at = time.monotonic()
        summary = await asyncio.wait_for(task, 30)
        return summary, time.monotonic() - at

    try:
        with caplog.at_level(logging.WARNING, logger="streamer"):
            summary, took = asyncio.run(stopped_while_waiting())
    finally:
        for hog in hogs:
            ray.kill(hog)
    assert summary.interrupted and summary.frames == 0 and took < 10, (summary, took)
    assert "each waits for a free CPU" in caplog.text
    assert not _pids("ray::EncoderReplica"), "a replica outlived its run"
