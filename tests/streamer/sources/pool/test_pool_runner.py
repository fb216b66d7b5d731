"""Who runs a source: `decoding` decides (this process, or a decode worker process), and its
runner runs each source where it was decided, with the run's plan. Workers start without the
encoders or torch."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from streamer.core.channel import Channel, DropPolicy
from streamer.core.frame import Frame
from streamer.sources import CameraSource, FileSource, SourceOptions, open_source
from streamer.sources.options import AnalysisSize, DecodePlan
from streamer.sources.pool import DecodePool, SourceRunner, decoding

DRAWS_NOTHING = DecodePlan(
    full_frames=False, analysis=AnalysisSize(224), analyze_fps=2.0, full_analysed=False
)


# The devices a `StillCamera` was opened for, in this process.
OPENED_HERE: list[object] = []


class StillCamera:
    """A `cv2.VideoCapture` stand-in: grey BGR frames at about 50 fps."""

    def __init__(self, device: object) -> None:
        OPENED_HERE.append(device)

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def get(self, prop: int) -> float:
        return 50.0

    def read(self) -> tuple[bool, np.ndarray]:
        time.sleep(0.02)
        return True, np.full((48, 64, 3), 128, np.uint8)

    def release(self) -> None:
        pass


def _count_runs_here(monkeypatch) -> list[str]:
    """The names of the files whose `run` is called in this process."""
    runs: list[str] = []
    original = FileSource.run

    def run(self, out, stop, plan=DecodePlan()):  # noqa: B008 (frozen)
        runs.append(self.name)
        return original(self, out, stop, plan)

    monkeypatch.setattr(FileSource, "run", run)
    return runs


async def _read(runner: SourceRunner, source, limit: int | None = None) -> list[Frame]:
    channel: Channel[Frame] = Channel(4, DropPolicy.BLOCK)
    stop = asyncio.Event()
    frames: list[Frame] = []
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runner.run(source, channel, stop))
        async for frame in channel:
            frames.append(frame)
            if limit is not None and len(frames) >= limit:
                stop.set()
    return frames


async def test_without_workers_every_source_runs_here_with_the_plan(small_clip, monkeypatch):
    runs = _count_runs_here(monkeypatch)
    source = open_source(small_clip)
    async with decoding([source], DRAWS_NOTHING, workers=0) as runner:
        assert runner.pool is None and not runner.in_worker(source)
        assert runner.plan_for(source) is DRAWS_NOTHING
        frames = await _read(runner, source)
    assert runs == ["small"] and len(frames) == 50
    analysed = [f for f in frames if f.picture.analysis is not None]
    assert len(analysed) == 4 and not any(f.picture.has_full for f in frames)  # the plan's


async def test_with_workers_files_run_in_a_worker_and_cameras_here(small_clip, monkeypatch):
    runs = _count_runs_here(monkeypatch)
    OPENED_HERE.clear()
    clip = open_source(small_clip)
    camera = CameraSource(0, options=SourceOptions(read_timeout=2.0), capture_factory=StillCamera)
    async with decoding([clip, camera], DecodePlan(), workers=1) as runner:
        assert runner.pool is not None and len(runner.pool.pids) == 1
        assert runner.in_worker(clip) and not runner.in_worker(camera)
        clip_frames = await _read(runner, clip)
        camera_frames = await _read(runner, camera, limit=3)
    assert runs == []  # the file was never run in this process ...
    assert len(clip_frames) == 50 and clip.status.frames == 50  # ... yet every frame came
    assert clip.status.state == "ended"
    assert OPENED_HERE == [0] and len(camera_frames) >= 3


async def test_a_live_stream_in_a_worker_gets_every_frames_analysis_picture():
    camera_only = CameraSource(0, capture_factory=StillCamera)
    stream = open_source("rtsp://cam.invalid/1")
    pool = DecodePool(1)  # not started: the plan is decided without a process
    runner = SourceRunner(DRAWS_NOTHING, pool, {stream: stream.worker_spec()})
    assert runner.plan_for(stream) == replace(DRAWS_NOTHING, analysis_every_frame=True)
    assert runner.plan_for(camera_only) is DRAWS_NOTHING
    assert (
        SourceRunner(DecodePlan(), pool, {stream: stream.worker_spec()}).plan_for(stream)
        == DecodePlan()
    )  # frames drawn at full size need no analysis picture for each


async def test_no_worker_is_started_for_sources_that_cannot_run_in_one():
    camera = CameraSource(0, capture_factory=StillCamera)
    assert camera.worker_spec() is None
    async with decoding([camera], DecodePlan(), workers=2) as runner:
        assert runner.pool is None and not runner.in_worker(camera)


async def test_a_worker_starts_without_the_encoders_or_torch(small_clip):
    async with decoding([open_source(small_clip)], DecodePlan(), workers=1) as runner:
        assert runner.pool is not None
        (pid,) = runner.pool.pids
        maps = Path(f"/proc/{pid}/maps").read_text()
    libraries = {Path(line.split()[-1]).name for line in maps.splitlines() if ".so" in line}
    assert any(name.startswith("libavcodec") for name in libraries)  # it did load PyAV
    assert not [name for name in libraries if "torch" in name]
