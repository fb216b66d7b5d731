"""`run_cluster` under real faults (issue 15, "Faults"): a node removed, a replica killed.

One simulated Ray cluster (`ray.cluster_utils.Cluster`) serves the module: a head node and a
worker node of one CPU each, the worker with the custom resource `door-cam`. A test that
removes the worker adds a fresh one; each test starts with both nodes up. Files are real clips,
live streams come from the real RTSP server of the test helpers, a node is removed as Ray's
own tests remove one (its raylet and workers stopped), and a replica's process is frozen and
killed with real signals. The run's log (the driver logs where each job goes and each loss)
tells the tests which stream ran on which node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
from media import same_records
from ray.cluster_utils import Cluster

from streamer.analysis.options import AnalysisConfig
from streamer.analysis.worker import EncoderChoice
from streamer.cluster.driver import run_cluster
from streamer.cluster.options import ClusterConfig, Pin
from streamer.cluster.placement import REPLICA_PREFIX
from streamer.config import RunConfig
from streamer.outputs.options import OutputConfig
from streamer.pipeline import run_pipeline

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TINY = EncoderChoice(kind="clip", model="tiny", weights="random", device="cpu")
DOOR_CAM = "door-cam"
RESTART_WITHIN_S = 10.0  # the bound for a lost node's live streams


@dataclass
class SimCluster:
    """The module's cluster: `head` (this process's node) and the current `worker`."""

    cluster: Cluster
    worker: object

    def add_worker(self) -> None:
        self.worker = self.cluster.add_node(num_cpus=1, resources={DOOR_CAM: 1})

    def remove_worker(self, *, crash: bool = False) -> None:
        """Remove the worker node: its processes told to stop, or with `crash` killed at once
        (SIGKILL, as when the machine dies: Ray learns it from its health checks). Ray's own
        removal kills the node's Ray daemons only; its workers (our shards and replicas) would
        notice their raylet gone and exit in their own time, writing on meanwhile, which a
        machine that died does not. A crash kills every process of the node in one go."""
        if crash:
            (raylet,) = self.worker.all_processes["raylet"]
            for pid in [*_descendants(raylet.process.pid), raylet.process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.cluster.remove_node(self.worker, allow_graceful=not crash)
        self.worker = None

    def freeze_worker(self) -> None:
        """Stop (SIGSTOP) every process of the worker node where it is: it finishes nothing
        more, as a machine that hangs. `remove_worker(crash=True)` kills them afterwards."""
        (raylet,) = self.worker.all_processes["raylet"]
        for pid in [raylet.process.pid, *_descendants(raylet.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def ensure_worker(self) -> None:
        """Both nodes up (a test before may have removed the worker and failed)."""
        if self.worker is None:
            self.add_worker()

    @property
    def worker_id(self) -> str:
        """The first characters of the worker's node id, as shard names carry them."""
        return self.worker.node_id[:6]


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended while we looked
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# What README ("More than one machine") tells users to set for a crashed node to be noticed in
# about 3 s rather than Ray's default of about 15 s (a check every 3 s, 5 missed in a row).
FAST_HEALTH_CHECKS = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_timeout_ms": "1000",
}


@pytest.fixture(scope="module")
def sim():
    """The module's cluster, both nodes up; shut down after the last test. Its processes are
    started with the health-check settings README gives (environment variables every Ray
    process reads at start)."""
    before = {name: os.environ.get(name) for name in FAST_HEALTH_CHECKS}
    os.environ.update(FAST_HEALTH_CHECKS)
    try:
        made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        ray.init(address=made.address, namespace="streamer", logging_level=logging.WARNING)
        cluster = SimCluster(made, None)
        cluster.add_worker()
        yield cluster
        ray.shutdown()
        made.shutdown()
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _config(inputs, out: Path, cluster: ClusterConfig | None = None, **kw) -> RunConfig:
    out.mkdir(parents=True, exist_ok=True)
    outputs = OutputConfig(jsonl=str(out / "{stream}.jsonl"), srt=str(out / "{stream}.srt"))
    return RunConfig(
        input=tuple(str(i) for i in inputs), outputs=outputs, encoder=TINY, llm=None,
        cluster=cluster, **kw,
    )  # fmt: skip


def _analyses(jsonl: Path) -> list[dict]:
    """The analysis records a stream's JSON Lines holds now (complete lines; a file being
    rewritten from a restart may be read half-way)."""
    try:
        text = jsonl.read_text()
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n") and '"type": "analysis"' in line:
            records.append(json.loads(line))
    return records


def _since(jsonl: Path, wall: float) -> list[dict]:
    """A live stream's analysis records made after the wall-clock time `wall`."""
    return [r for r in _analyses(jsonl) if r["wall"] > wall]


def _rerun(out: Path, stream: str, wall: float) -> list[dict]:
    """A restarted live stream's analysis records made after `wall`, once its new run has
    moved the lost run's outputs aside (none before: the file may still be the old run's)."""
    if not (out / f"{stream}.keep-1.jsonl").exists():
        return []
    return _since(out / f"{stream}.jsonl", wall)


def _launches(caplog) -> list[tuple[str, str]]:
    """(job, where) for each job the driver started, in order: ("file a", "shard-... on ...")
    or ("stream door (attempt 2)", ...)."""
    found = []
    for record in caplog.records:
        if record.name == "streamer" and " → " in record.msg:
            job, where = record.getMessage().split(" → ", 1)
            found.append((job, where))
    return found


def _on_node(caplog, node_id: str) -> dict[str, str]:
    """Stream name → the job last started for it, for the jobs last started on `node_id`."""
    last: dict[str, tuple[str, str]] = {}
    for job, where in _launches(caplog):
        last[job.split()[1]] = (job, where)
    return {name: job for name, (job, where) in last.items() if node_id in where}


def _files_done(caplog) -> set[str]:
    return {
        r.getMessage().split()[1]
        for r in caplog.records
        if r.name == "streamer" and r.msg.startswith("%s done")
    }


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _snapshot(path: Path) -> tuple[int, bytes]:
    return path.stat().st_mtime_ns, path.read_bytes()


def test_a_lost_node_s_unfinished_files_are_redone_elsewhere(sim, clips, tmp_path, caplog):
    """The worker lost while a file list runs: the file it held is redone from the start on
    the head node (its output replaced, equal byte for byte to one process's), files finished
    before are untouched, and the summary has every file once.

    The worker is frozen (SIGSTOP) the moment a file is done while it holds another, then
    crashed: a file after the first takes a few hundred milliseconds here, so a node left
    running while the test looks could finish it, and then nothing of it would be lost."""
    sim.ensure_worker()
    worker = sim.worker_id
    out = tmp_path / "c"
    config = _config(clips, out, ClusterConfig("auto", encoders=2, files_per_shard=1))

    async def run_and_remove():
        task = asyncio.create_task(run_cluster(config, progress=True))
        deadline = time.monotonic() + 120
        while True:
            assert not task.done(), "the run ended before the worker could be removed mid-file"
            assert time.monotonic() < deadline, "no file finished while the worker held another"
            done = _files_done(caplog)
            held = [n for n in _on_node(caplog, worker) if n not in done]
            if done and held:
                break
            await asyncio.sleep(0.01)
        sim.freeze_worker()
        kept = {p: _snapshot(p) for n in done for p in (out / f"{n}.jsonl", out / f"{n}.srt")}
        await asyncio.to_thread(sim.remove_worker, crash=True)
        return await task, kept, held

    with caplog.at_level(logging.INFO, logger="streamer"):
        summary, kept, held = asyncio.run(run_and_remove())
    sim.add_worker()

    assert [s.name for s in summary.streams] == ["a", "b", "c", "d"]
    assert not summary.interrupted and summary.incomplete is None
    lost = {w.split()[1].rstrip(":") for w in _warnings(caplog) if "redoing it from the start" in w}
    assert lost, "the worker was frozen holding a file, and no file was redone"
    finished = {r.args[0] for r in caplog.records if r.msg == "%s done (%d/%d files)"}
    for name in held:  # one may have ended in the instant before the freeze: then not lost
        assert name in lost or f"file {name}" in finished, name
    for name in lost:
        redone = [where for job, where in _launches(caplog) if job == f"file {name} (attempt 2)"]
        assert redone and worker not in redone[0], (name, redone)
    one = asyncio.run(run_pipeline(_config(clips, tmp_path / "one")))
    assert summary.frames == one.frames and summary.analysed == one.analysed
    for name in "abcd":
        same_records(out / f"{name}.jsonl", tmp_path / "one" / f"{name}.jsonl")
        ours, theirs = out / f"{name}.srt", tmp_path / "one" / f"{name}.srt"
        assert ours.read_bytes() == theirs.read_bytes(), ours.name
    for path, before in kept.items():
        assert _snapshot(path) == before, f"{path.name} was written again after it finished"


def test_a_lost_node_s_live_streams_restart_and_pinned_ones_wait(
    sim, rtsp_server, tmp_path, caplog
):
    """Four cameras, `door` pinned to the worker: the worker crashes (its raylet and workers
    SIGKILLed), the unpinned stream it ran is analysed on the head within 10 s, `door` is
    reported lost (and not run elsewhere) and comes back once a node with `door-cam` joins."""
    sim.ensure_worker()
    worker = sim.worker_id
    out = tmp_path / "live"
    cams = {"door": "cam1", "yard": "cam2", "gate": "cam1", "hall": "cam2"}
    inputs = [f"{name}={rtsp_server.url(cam)}" for name, cam in cams.items()]
    pinned = ClusterConfig("auto", encoders=2, pins=(Pin("door", resource=DOOR_CAM),))
    config = _config(inputs, out, pinned)

    async def until(what: str, check, seconds: float, task: asyncio.Task) -> float:
        deadline = time.monotonic() + seconds
        while not check():
            assert not task.done(), f"the run ended before {what}"
            assert time.monotonic() < deadline, f"not within {seconds:.0f} s: {what}"
            await asyncio.sleep(0.1)
        return time.time()

    removed_at: list[float] = []

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_cluster(config, stop=stop))
        try:
            everyone = lambda: all(len(_analyses(out / f"{n}.jsonl")) >= 3 for n in cams)  # noqa: E731
            await until("every stream was analysed", everyone, 90, task)
            there = _on_node(caplog, worker)
            moved = [name for name in there if name != "door"]
            assert "door" in there and len(moved) == 1, there
            removed = time.time()
            removed_at.append(removed)
            await asyncio.to_thread(sim.remove_worker, crash=True)
            # Its new run moved the old outputs aside (.keep-1) before writing: the rows
            # counted are the new run's, not the last ones of the node that died.
            back = lambda: _rerun(out, moved[0], removed)  # noqa: E731
            await until(f"{moved[0]} ran again", back, 30, task)
            restart_s = back()[0]["wall"] - removed
            assert not _since(out / "door.jsonl", removed + 1.0), "door ran without its node"
            added = time.time()
            sim.add_worker()  # on the loop's thread: Ray's node start sets signal handlers
            door_back = lambda: _rerun(out, "door", added)  # noqa: E731
            await until("door came back with a door-cam node", door_back, 90, task)
        finally:
            stop.set()
        return await task, moved[0], restart_s

    with caplog.at_level(logging.INFO, logger="streamer"):
        summary, moved, restart_s = asyncio.run(scenario())

    print(f"\n{moved} analysed again {restart_s:.1f} s after its node crashed")
    assert restart_s < RESTART_WITHIN_S, f"{moved} analysed again {restart_s:.1f} s after"
    lost = [w for w in _warnings(caplog) if w.startswith("stream door:")]
    assert lost and "pinned" in lost[0] and "lost until" in lost[0], _warnings(caplog)
    assert any(w.startswith(f"stream {moved}:") and "elsewhere" in w for w in _warnings(caplog))
    door = [where for job, where in _launches(caplog) if job == "stream door (attempt 2)"]
    assert door and sim.worker_id in door[0], door
    assert summary.interrupted and [s.name for s in summary.streams] == list(cams)
    assert all(s.analysed > 0 for s in summary.streams), summary.streams
    # What the moved stream wrote before its node was lost is kept beside the new file.
    kept = _analyses(out / f"{moved}.keep-1.jsonl")
    assert len(kept) >= 3 and all(r["wall"] <= removed_at[0] + 1.0 for r in kept), kept[-1:]
    assert _analyses(out / f"{moved}.jsonl")[0]["wall"] > removed_at[0]


def _replicas() -> list:
    """The encoder replicas of the run in progress (named `encoder-RUN-I`), by index."""
    names = sorted(n for n in ray.util.list_named_actors() if n.startswith(REPLICA_PREFIX))
    return [ray.get_actor(name) for name in names]


async def _freeze_and_kill(victim: int, other: int, frozen_s: float) -> float:
    """Freeze both replica processes for `frozen_s` (frames pile up at each), SIGKILL `victim`
    and let `other` go on; returns when the kill happened (wall clock)."""
    for pid in (victim, other):
        os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(frozen_s)
        os.kill(victim, signal.SIGKILL)
        return time.time()
    finally:
        os.kill(other, signal.SIGCONT)


async def _until_it_works_again(replica, old_pid: int, seconds: float) -> None:
    """Until `replica` answers from a new process and has encoded frames there."""
    deadline = time.monotonic() + seconds
    while True:
        assert time.monotonic() < deadline, "the killed replica did not work again"
        try:
            stats = await asyncio.wait_for(replica.stats.remote(), 5)
        except (TimeoutError, ray.exceptions.RayActorError):  # being restarted
            stats = None
        if stats is not None and stats.pid != old_pid and stats.images > 0:
            return
        await asyncio.sleep(0.2)


def _held_by_the_lost_replica(records: list[dict], frozen: float) -> list[int]:
    """Frames missing between two frames that came back after the freeze began.

    While both replicas are frozen a shard's sends alternate between them (least outstanding);
    the survivor's frames come back once it thaws, so a frame missing between two of them is
    one the killed replica held. Had it been resent, it would be there.
    """
    after = {r["frame"] for r in records if r["wall"] > frozen}
    seen = {r["frame"] for r in records}
    return [i + 1 for i in sorted(after) if i + 1 not in seen and i + 2 in after]


def test_a_lost_replica_drops_live_frames_and_the_pool_is_refilled(sim, rtsp_server, tmp_path):
    """Both replicas frozen while a live camera (every frame analysed) sends, then one killed:
    the frames it held are dropped and counted, not resent; the stream goes on; Ray starts the
    replica again in a new process and the shard's later sends reach it."""
    sim.ensure_worker()
    out = tmp_path / "live"
    every_frame = AnalysisConfig(analyze_fps=None)
    cluster = ClusterConfig("auto", encoders=2, in_flight=64)  # room for the frozen frames
    config = _config([f"yard={rtsp_server.url('cam1')}"], out, cluster, analysis=every_frame)
    jsonl = out / "yard.jsonl"

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_cluster(config, stop=stop))
        try:
            while len(_analyses(jsonl)) < 25:
                assert not task.done(), "the run ended early"
                await asyncio.sleep(0.1)
            replicas = _replicas()
            before = [await r.stats.remote() for r in replicas]
            assert len(before) == 2 and all(s.images for s in before), before
            frozen = time.time()
            killed = await _freeze_and_kill(before[1].pid, before[0].pid, 1.5)
            await _until_it_works_again(replicas[1], before[1].pid, 60)
            while len(_since(jsonl, killed + 1.0)) < 25:
                assert not task.done(), "the stream ended after the replica was lost"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
        return await task, frozen

    summary, frozen = asyncio.run(scenario())
    (yard,) = summary.streams
    records = _analyses(jsonl)
    frames = [r["frame"] for r in records]
    # (Not that the first is frame 0: a live stream may drop its first frames too.)
    assert len(frames) == len(set(frames)) == yard.analysed
    lost = _held_by_the_lost_replica(records, frozen)
    assert len(lost) >= 3, f"frames {frames}: were the lost replica's frames resent?"
    # Every frame up to the last analysed one was delivered or dropped (at a channel, before
    # or after the encoder); what the stream counts beyond those are its encoder drops, the
    # lost replica's among them.
    undelivered = frames[-1] + 1 - yard.frames
    assert yard.dropped - undelivered >= len(lost), (yard.dropped, undelivered, lost)
