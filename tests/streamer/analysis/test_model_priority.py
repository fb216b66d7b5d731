"""A file run's model runs at low priority; a live run's does not.

In a run whose inputs are all files the decode, overlay and video-encode threads take the cores
first and the model fills what they leave idle (`start_local_encoder_service(background=True)`):
its load thread and service thread lower their nice value, and every thread they start (the
runtime's own workers) inherits it. These tests read the nice values the kernel holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading

import numpy as np
import pytest

from streamer import AnalysisConfig, OutputConfig, RunConfig, ServeConfig, run_pipeline
from streamer.core.background import BACKGROUND_NICE, thread_nice
from streamer.reload import Reading, Reloader
from streamer.sources import files_only
from streamer.watch.web import WebViewer

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)


class NiceRecorder:
    """The tiny CLIP, noting the nice value of the thread each batch runs on."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.nice: set[int | None] = set()

    def embed_array(self, images):  # what the analysis worker calls
        self.nice.add(thread_nice())
        return self._encoder.embed_array(images)

    def __getattr__(self, name):
        return getattr(self._encoder, name)


def _lowered(nice: int) -> int:
    return min(19, nice + BACKGROUND_NICE)


@pytest.mark.parametrize(
    ("inputs", "live", "expected"),
    [
        (("a.mp4",), None, True),
        (("a.mp4", "b.mkv"), False, True),
        (("a.mp4",), True, False),  # a file played as live: its analysis must keep up
        (("a.mp4", "door=rtsp://127.0.0.1:8554/cam"), None, False),  # a named stream
        (("0",), None, False),  # a camera
        (("https://example.com/live.m3u8",), False, False),  # arrives in real time anyway
    ],
)
def test_only_a_run_of_files_read_at_their_own_pace_lowers_the_model(inputs, live, expected):
    assert files_only(inputs, live) is expected


@linux_only
@pytest.mark.integration
async def test_a_file_runs_its_model_below_the_video_threads(tmp_path, small_clip, tiny_encoder):
    mine = thread_nice()
    recorder = NiceRecorder(tiny_encoder)
    config = RunConfig(input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
                       analysis=AnalysisConfig(analyze_fps=10.0))  # fmt: skip
    summary = await run_pipeline(config, encoder=recorder)
    assert summary.streams[0].analysed == 20
    assert recorder.nice == {_lowered(mine)}
    assert thread_nice() == mine  # the caller's own thread keeps its priority


@linux_only
@pytest.mark.integration
async def test_a_live_run_keeps_its_model_at_normal_priority(tmp_path, small_clip, tiny_encoder):
    mine = thread_nice()
    recorder = NiceRecorder(tiny_encoder)
    config = RunConfig(input=str(small_clip), live=True,
                       outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))  # fmt: skip
    summary = await run_pipeline(config, encoder=recorder)
    assert summary.streams[0].analysed > 0
    assert recorder.nice == {mine}


@linux_only
@pytest.mark.integration
@pytest.mark.parametrize("join", ["--serve", "a viewer of the caller's", "--config reload"])
async def test_a_file_run_that_a_live_stream_can_join_keeps_its_model_at_normal_priority(
    join, tmp_path, small_clip, tiny_encoder
):
    # A priority once lowered cannot be raised back: a camera added later through the stream
    # API or a reload would have its analysis wait for idle cores.
    mine = thread_nice()
    recorder = NiceRecorder(tiny_encoder)
    config = RunConfig(input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
                       serve=ServeConfig(port=0) if join == "--serve" else None)  # fmt: skip
    observers = [WebViewer(ServeConfig(port=0))] if join == "a viewer of the caller's" else []
    first = Reading(config, {})
    reloader = (
        Reloader(lambda: first, str(tmp_path / "run.toml"), first) if "reload" in join else None
    )
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_pipeline(config, encoder=recorder, stop=stop, observers=observers, reloader=reloader)
    )
    try:
        for _ in range(600):  # a viewer keeps the run up after its file: stop it once analysed
            if recorder.nice or run.done():
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        summary = await asyncio.wait_for(run, 60)
    assert summary.streams[0].analysed > 0
    assert recorder.nice == {mine}


def _threads() -> dict[int, int]:
    """This process's threads (native ids) and their nice values."""
    out = {}
    for name in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # ended meanwhile
            out[int(name)] = os.getpriority(os.PRIO_PROCESS, int(name))
    return out


@linux_only
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenVINO starts no worker on one core")
async def test_the_runtime_workers_started_by_the_load_inherit_the_low_priority(tmp_path):
    # OpenVINO starts its worker threads while it compiles, on the load thread: lowering only
    # the service's thread would leave them at normal priority.
    pytest.importorskip("openvino", reason="the cpu extra (pip install openvino nncf)")
    from streamer.analysis.loading import start_local_encoder_service
    from streamer.analysis.worker import EncoderChoice
    from streamer.core.batcher import BatchPolicy

    mine = thread_nice()
    before = _threads()
    choice = EncoderChoice("clip", "tiny", weights="random", device="cpu", backend="openvino",
                           export_cache=str(tmp_path / "exports"))  # fmt: skip
    service = await start_local_encoder_service(choice, BatchPolicy(), background=True)
    try:
        await service.embed_text(["a dog"])  # on the service's thread
        await service._worker.embed([np.zeros((64, 64, 3), np.uint8)] * 4)
        started = {tid: nice for tid, nice in _threads().items() if tid not in before}
    finally:
        service.close()
    python = {t.native_id for t in threading.enumerate()}
    assert any(tid not in python for tid in started), "no runtime worker thread was started"
    assert set(started.values()) == {_lowered(mine)}, started
