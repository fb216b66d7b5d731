"""Observers see what the files see, as it happens, and a broken one never stops the run."""

import asyncio
import logging

from media import read_jsonl

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.core.events import FirstAnalysis, Observer


class Recorder(Observer):
    def __init__(self, wants: bool = True) -> None:
        self.wants = wants
        self.events: list[tuple] = []
        self.run = None

    @property
    def wants_frames(self) -> bool:
        return self.wants

    async def start(self, run) -> None:
        self.run = run
        self.events.append(("start", tuple(s.name for s in run.streams)))

    def frame(self, stream, image, timeline) -> None:
        self.events.append(("frame", stream, image.shape, float(image.mean()), timeline))

    def analysis(self, stream, annotation) -> None:
        self.events.append(("analysis", stream, annotation.pts))

    def caption(self, stream, caption) -> None:
        self.events.append(("caption", stream, caption.text))

    async def stop(self) -> None:
        self.events.append(("stop",))


class Broken(Observer):
    wants_frames = True

    def frame(self, stream, image, timeline) -> None:
        raise RuntimeError("viewer bug")

    def caption(self, stream, caption) -> None:
        raise RuntimeError("viewer bug")


async def test_an_observer_sees_every_drawn_frame_and_each_record_in_order(
    tmp_path, small_clip, tiny_encoder
):
    recorder = Recorder()
    config = RunConfig(
        input=f"clip={small_clip}", outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl"))
    )
    summary = await run_pipeline(config, encoder=tiny_encoder, observers=[recorder])
    kinds = [e[0] for e in recorder.events]
    assert kinds[0] == "start" and recorder.events[0][1] == ("clip",) and kinds[-1] == "stop"
    frames = [e for e in recorder.events if e[0] == "frame"]
    # Drawn although no video is written: an observer wants the frames.
    assert len(frames) == summary.frames == 50
    assert all(f[1] == "clip" and f[2] == (180, 320, 3) for f in frames)
    assert [f[4] for f in frames] == sorted(f[4] for f in frames)
    records = read_jsonl(tmp_path / "a.jsonl")
    analysed = [r["pts"] for r in records if r["type"] == "analysis"]
    assert [e[2] for e in recorder.events if e[0] == "analysis"] == analysed
    captions = [r["text"] for r in records if r["type"] == "caption"]
    assert [e[2] for e in recorder.events if e[0] == "caption"] == captions and captions
    assert recorder.run is not None and recorder.run.encoder.load().images == summary.analysed


async def test_frames_are_not_drawn_for_an_observer_that_does_not_want_them(
    tmp_path, small_clip, tiny_encoder
):
    recorder = Recorder(wants=False)
    config = RunConfig(input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))
    await run_pipeline(config, encoder=tiny_encoder, observers=[recorder])
    assert not [e for e in recorder.events if e[0] == "frame"]
    assert [e for e in recorder.events if e[0] == "analysis"]


async def test_a_broken_observer_is_reported_once_and_the_run_goes_on(
    tmp_path, small_clip, tiny_encoder, caplog
):
    recorder = Recorder()
    config = RunConfig(input=str(small_clip), outputs=OutputConfig(video=str(tmp_path / "a.mp4")))
    with caplog.at_level(logging.ERROR, logger="streamer.core.events"):
        summary = await run_pipeline(config, encoder=tiny_encoder, observers=[Broken(), recorder])
    assert summary.frames == 50
    assert len([e for e in recorder.events if e[0] == "frame"]) == 50  # the next one still sees
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2  # frame and caption: once each, not once per call


async def test_first_analysis_is_reached_at_the_first_analysed_frame_or_the_runs_end():
    first = FirstAnalysis()
    never = asyncio.get_running_loop().create_future()  # a run that goes on
    waiting = asyncio.create_task(first.reached(never))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    first.analysis("cam", None)
    await asyncio.wait_for(waiting, 1)
    ended = asyncio.get_running_loop().create_future()  # a run that ends before any analysis
    ended.set_result(None)
    await asyncio.wait_for(FirstAnalysis().reached(ended), 1)
    never.cancel()
