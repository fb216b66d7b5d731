"""Decode worker processes: real worker processes, real shared memory, real files and a real RTSP
server. Both contracts hold (files: every frame, in order; live: freshest frames), a stop or a
dead worker ends the stream promptly, and no shared-memory segment is left behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from live_helpers import FAST, RtspServer, Running, alive, wait_until
from servers.udp_loss_proxy import ProxyThread, UdpLossProxy

from streamer import AnalysisConfig, OutputConfig, RunConfig, run_pipeline
from streamer.cli.main import build_parser
from streamer.cli.run import config_from_args
from streamer.core.channel import Channel, DropPolicy
from streamer.core.frame import Frame
from streamer.sources import SourceOptions, open_source
from streamer.sources.options import AnalysisSize, DecodePlan
from streamer.sources.pool import SHM_FOLDER, SourceRunner, decoding, worker_count

pytestmark = pytest.mark.timeout(120)


def _segments() -> list[str]:
    """This process's decode-pool segments in /dev/shm (there should be none between runs)."""
    return sorted(p.name for p in SHM_FOLDER.glob(f"streamer-{os.getpid()}-*"))


@pytest.fixture(autouse=True)
def _no_leaked_segments():
    assert _segments() == []
    yield
    assert _segments() == [], "a shared-memory segment outlived its stream"


async def _read(source, runner: SourceRunner | None, *, capacity: int = 4,
                stop: asyncio.Event | None = None, every: float = 0.0,
                until: int | None = None) -> list[Frame]:  # fmt: skip
    """Run `source` through `runner` (by itself when None), collecting its frames; `every` s
    per frame makes a slow consumer; `until` sets `stop` after that many frames."""
    stop = stop or asyncio.Event()
    channel: Channel[Frame] = Channel(capacity, DropPolicy.BLOCK)
    frames: list[Frame] = []
    async with asyncio.TaskGroup() as tg:
        if runner is None:
            tg.create_task(source.run(channel, stop))
        else:
            tg.create_task(runner.run(source, channel, stop))
        async for frame in channel:
            frames.append(frame)
            if until is not None and len(frames) == until:
                stop.set()
            if every:
                await asyncio.sleep(every)
    return frames


def test_auto_spreads_decode_only_when_streams_outnumber_half_the_cores():
    assert worker_count("auto", 1, cores=2) == 0
    assert worker_count("auto", 8, cores=16) == 0
    assert worker_count("auto", 32, cores=16) == 8  # a worker per 4 streams, ≤ one per 2 cores
    assert worker_count("auto", 3, cores=2) == 1
    assert worker_count(4, 2, cores=16) == 2  # never more workers than streams
    assert worker_count(0, 10) == 0


def test_cli_reads_decode_workers_and_hwaccel():
    def sources(*flags: str):
        args = build_parser().parse_args(["run", "x.mp4", "--jsonl", "o.jsonl", *flags])
        return config_from_args(args).sources

    options = sources("--decode-workers", "auto")
    assert options.decode_workers == "auto" and options.hwaccel == "none"
    options = sources("--decode-workers", "3", "--hwaccel", "auto")
    assert options.decode_workers == 3 and options.hwaccel == "auto"
    parse = build_parser().parse_args
    with pytest.raises(SystemExit):
        parse(["run", "x.mp4", "--jsonl", "o.jsonl", "--decode-workers", "-1"])


async def test_a_file_in_a_worker_gives_every_frame_in_order_with_its_pixels(sample_clip):
    reference = await _read(open_source(sample_clip), None)
    source = open_source(sample_clip)
    async with decoding([source], DecodePlan(), workers=1) as runner:
        assert runner.pool is not None and runner.in_worker(source)
        # A slow reader: the worker must wait for it (backpressure), not drop or reorder.
        frames = await _read(source, runner, capacity=2, every=0.005)
    assert runner.pool.pids == []  # the workers are gone with the context
    assert [f.index for f in frames] == list(range(132))
    assert [(f.pts, f.pts_raw, f.time_base) for f in frames] == [
        (f.pts, f.pts_raw, f.time_base) for f in reference
    ]
    for ours, theirs in zip(frames[::13], reference[::13], strict=True):
        assert np.array_equal(ours.image, theirs.image)  # the same decode, copied exactly
    assert source.status.state == "ended" and source.incomplete is None
    assert source.status.frames == 132


async def test_a_worker_sends_only_the_pictures_the_plan_asks_for(sample_clip):
    plan = DecodePlan(full_frames=False, analysis=AnalysisSize(224), analyze_fps=2.0,
                      full_analysed=False)  # fmt: skip
    source = open_source(sample_clip)
    async with decoding([source], plan, workers=1) as runner:
        frames = await _read(source, runner)
    analysed = [f.index for f in frames if f.picture.analysis is not None]
    assert len(frames) == 132 and len(analysed) == 11
    assert all(f.analysis_image.shape == (224, 398, 3) for f in frames if f.index in analysed)
    assert not any(f.picture.has_full for f in frames)


async def test_a_truncated_file_in_a_worker_says_where_it_stopped(truncated_clip):
    source = open_source(truncated_clip)
    async with decoding([source], DecodePlan(), workers=1) as runner:
        frames = await _read(source, runner)
    assert 10 < len(frames) < 132
    assert source.incomplete is not None and source.incomplete.frames == len(frames)
    assert f"{len(frames)} of 132 frames" in str(source.incomplete)


async def test_a_stop_ends_a_file_in_a_worker_promptly(long_clip):
    source = open_source(long_clip)
    async with decoding([source], DecodePlan(), workers=1) as runner:
        frames = await asyncio.wait_for(_read(source, runner, capacity=2, until=10), 20)
    assert 10 <= len(frames) < 60  # what was in flight, then nothing
    assert [f.index for f in frames] == list(range(len(frames)))


async def test_a_killed_worker_fails_its_file_stream_instead_of_hanging(long_clip):
    source = open_source(long_clip)
    stop = asyncio.Event()
    async with decoding([source], DecodePlan(), workers=1) as runner:
        assert runner.pool is not None
        channel: Channel[Frame] = Channel(2)
        frames = 0
        async with asyncio.timeout(30):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(runner.run(source, channel, stop))
                async for _ in channel:
                    frames += 1
                    if frames == 20:
                        os.kill(runner.pool.pids[0], signal.SIGKILL)  # as the OOM killer would
    assert 20 <= frames < 792
    assert source.incomplete is not None and source.status.finished
    assert "decode worker process died (exit code -9)" in str(source.incomplete)
    assert source.incomplete.frames == frames


async def test_the_pipeline_with_decode_workers_writes_what_it_writes_without(
    tmp_path, small_clip, tiny_encoder
):
    def config(name: str, workers: int) -> RunConfig:
        return RunConfig(
            input=(f"a={small_clip}", f"b={small_clip}"),
            outputs=OutputConfig(jsonl=str(tmp_path / f"{name}-{{stream}}.jsonl"),
                                 video=str(tmp_path / f"{name}-{{stream}}.mp4"), copy_audio=False),
            analysis=AnalysisConfig(text_cache=None),
            sources=SourceOptions(decode_workers=workers),
        )  # fmt: skip

    in_process = await run_pipeline(config("threads", 0), encoder=tiny_encoder)
    pooled = await run_pipeline(config("workers", 2), encoder=tiny_encoder)
    assert [s.frames for s in pooled.streams] == [s.frames for s in in_process.streams] == [50, 50]
    assert pooled.incomplete is None
    for stream in ("a", "b"):
        assert _analyses(tmp_path / f"workers-{stream}.jsonl") == _analyses(
            tmp_path / f"threads-{stream}.jsonl"
        )


def _analyses(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r["type"] == "analysis"]


@pytest.mark.integration
async def test_a_live_rtsp_stream_in_a_worker(rtsp_server):
    source = open_source(rtsp_server.url("cam1"), options=FAST)
    plan = DecodePlan(full_frames=False, analysis=AnalysisSize(224), analyze_fps=5.0)
    async with decoding([source], plan, workers=1) as runner:
        # Live and drawing nothing: every frame carries its analysis-size picture, since the
        # pipeline may pick any of them and a worker's frame cannot be converted later.
        assert runner.plan_for(source).analysis_every_frame
        async with Running(source, runner=runner) as run:
            await run.until(lambda: len(run.frames) >= 25, 20, "25 frames")
            assert source.status.state == "online" and source.status.frames >= 25
            assert source.status.damaged == 0  # over TCP nothing is lost
    frames = run.frames
    assert all(f.analysis_image.shape == (224, 398, 3) for f in frames)
    assert [f.index for f in frames] == list(range(len(frames)))  # a quick reader drops none
    assert (source.info.width, source.info.height) == (320, 180)


@pytest.mark.integration
async def test_damage_counted_in_a_worker_reaches_the_source(gst_rtsp):
    """A stream losing 5 % of its RTP datagrams, decoded in a worker process: the damaged
    pictures the worker's copy of the source counts show in this process's `status`."""
    server = RtspServer(gst_rtsp, {"cam": "pattern:640x360"})
    server.start()
    proxy = UdpLossProxy("127.0.0.1", server.port, loss=0.05, seed=5)
    try:
        with ProxyThread(proxy):
            options = SourceOptions(rtsp_transport="udp", open_timeout=3.0, read_timeout=5.0)
            source = open_source(proxy.url("cam"), options=options)
            async with (
                decoding([source], DecodePlan(), workers=1) as runner,
                Running(source, runner=runner) as run,
            ):
                await run.until(lambda: source.status.damaged >= 2, 30, "2 damaged pictures")
    finally:
        server.kill()
    assert proxy.counters.rtp_dropped >= 2
    assert 2 <= source.status.damaged < len(run.frames)


@pytest.mark.integration
async def test_a_killed_worker_fails_its_live_stream(rtsp_server):
    source = open_source(rtsp_server.url("cam2"), options=FAST)
    async with decoding([source], DecodePlan(), workers=1) as runner:
        assert runner.pool is not None
        async with Running(source, runner=runner) as run:
            await run.until(lambda: len(run.frames) >= 5, 20, "5 frames")
            os.kill(runner.pool.pids[0], signal.SIGKILL)
            await run.ended(10)
    assert source.status.state == "failed"
    assert "decode worker process died" in source.status.last_error
    assert run.frames[0].image.shape == (180, 320, 3)


async def test_workers_ignore_ctrl_c_and_leave_when_the_pool_closes(sample_clip):
    source = open_source(sample_clip)
    async with decoding([source], DecodePlan(), workers=2) as runner:
        assert runner.pool is not None
        pids = runner.pool.pids
        for pid in pids:
            os.kill(pid, signal.SIGINT)  # a terminal's Ctrl-C must not kill a worker mid-frame
        frames = await _read(source, runner)
        assert len(frames) == 132
    await wait_until(lambda: not any(alive(pid) for pid in pids), 5, "workers gone")


def _worker_pids() -> set[int]:
    """Every decode worker process on this machine (their command line runs the worker's
    `main`)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"streamer.sources.pool.worker import main" in cmdline.read_bytes():
                found.add(int(cmdline.parent.name))
        except OSError:  # the process ended while we looked
            continue
    return found


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_stops_a_run_with_workers_and_leaves_no_process_or_segment(tmp_path, long_clip):
    before = _worker_pids()
    out = tmp_path / "a.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", str(long_clip), "--jsonl", str(out),
         "--decode-workers", "1", "--model", "tiny", "--weights", "random", "--no-llm",
         "--no-progress", "--analyze-fps", "all"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 5_000):
        time.sleep(0.1)
    started = _worker_pids() - before
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert len(started) == 1  # the run's worker was there ...
    assert not (_worker_pids() & started)  # ... and is gone with the run
    assert not list(SHM_FOLDER.glob(f"streamer-{proc.pid}-*"))
    assert "Traceback" not in stderr
