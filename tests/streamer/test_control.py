"""Removing a stream is bounded: one whose last frames never go through is cancelled after
`REMOVE_TIMEOUT_S`, its files finished as they are, and the run goes on."""

import asyncio
import threading

from live_helpers import wait_until
from media import ffprobe, read_jsonl, video_stream

from streamer import AnalysisConfig, OutputConfig, RunConfig, run_pipeline
from streamer.config import ServeConfig
from streamer.watch.web import WebViewer


class GatedEncoder:
    """The tiny CLIP whose embedding waits while its gate is shut (an analysis that hangs)."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.gate = threading.Event()
        self.gate.set()
        self.held = threading.Event()  # an analysis is waiting at the shut gate

    def _hold(self) -> None:
        if not self.gate.is_set():
            self.held.set()
        self.gate.wait(60)

    def embed_array(self, images):  # what the analysis worker calls
        self._hold()
        return self._encoder.embed_array(images)

    def embed(self, images):
        self._hold()
        return self._encoder.embed(images)

    def __getattr__(self, name):
        return getattr(self._encoder, name)


def delivered(viewer: WebViewer) -> int:
    streams = viewer.run.streams if viewer.run is not None else []
    return streams[0].stats.delivered if streams else 0


async def test_a_stream_whose_last_frames_hang_is_cancelled_with_its_files_whole(
    tmp_path, sample_clip, tiny_encoder, monkeypatch
):
    monkeypatch.setattr("streamer.control.REMOVE_TIMEOUT_S", 0.5)
    encoder = GatedEncoder(tiny_encoder)
    outputs = OutputConfig(video=str(tmp_path / "{stream}.mp4"),
                           jsonl=str(tmp_path / "{stream}.jsonl"), preset="ultrafast")  # fmt: skip
    # A file with every frame analysed: each frame waits for its analysis, so a hung encoder
    # holds the next delivery whenever the gate shuts (at 2 fps the source could reach its stop
    # before the next analysed frame, and the removal would finish in time).
    config = RunConfig(input=f"clip={sample_clip}", outputs=outputs,
                       analysis=AnalysisConfig(analyze_fps=None))  # fmt: skip
    viewer = WebViewer(ServeConfig(port=0, token="t"))  # keeps the run up once it has no stream
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=encoder, stop=stop, observers=[viewer]))
    try:
        await wait_until(lambda: delivered(viewer) > 10, 30, "clip runs")
        encoder.gate.clear()
        # Analysis runs ahead of delivery: only once a frame's analysis is held does the
        # stream have a frame it cannot finish (earlier, the removal could drain in time).
        await wait_until(encoder.held.is_set, 30, "an analysis held at the gate")
        summary = await asyncio.wait_for(viewer.run.control.remove("clip"), 10)
        assert "cancelled" in summary and "0.5 s" in summary["cancelled"]
        assert 10 < summary["frames"] < 132
        assert not viewer.run.streams and not task.done()  # the run goes on
    finally:
        encoder.gate.set()
        stop.set()
        await asyncio.wait_for(task, 30)
    video = video_stream(ffprobe(tmp_path / "clip.mp4"))
    assert int(video["nb_read_frames"]) == summary["frames"]
    records = read_jsonl(tmp_path / "clip.jsonl")  # every line a whole record
    # A frame analysed but cut before its turn came is counted, not written.
    assert 0 < sum(r["type"] == "analysis" for r in records) <= summary["analysed"]


async def test_a_stream_added_again_under_its_name_gets_its_first_caption_at_once(
    tmp_path, long_clip, tiny_encoder
):
    # The caption schedule kept the removed stream's last caption time, in its media seconds;
    # the new stream's start at 0, so it waited as long as the first had run.
    from streamer import CaptionPolicy
    from streamer.watch.web.stream_body import StreamRequest

    outputs = OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl"))
    config = RunConfig(
        input=f"cam={long_clip}",
        live=True,
        outputs=outputs,
        llm=None,
        captions=CaptionPolicy(0.5, 1e9, 2.0),
    )  # one caption per stream run
    viewer = WebViewer(ServeConfig(port=0, token="t"))  # keeps the run up once it has no stream
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                            observers=[viewer]))  # fmt: skip
    try:
        await wait_until(lambda: delivered(viewer) > 75, 60, "3 s of the first stream")
        await viewer.run.control.remove("cam")
        (tmp_path / "cam.jsonl").rename(tmp_path / "first.jsonl")
        await viewer.run.control.add(StreamRequest(name="cam", input=str(long_clip)))
        await wait_until(lambda: delivered(viewer) > 25, 60, "1 s of the second")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert [r for r in read_jsonl(tmp_path / "first.jsonl") if r["type"] == "caption"]
    again = [r for r in read_jsonl(tmp_path / "cam.jsonl") if r["type"] == "caption"]
    assert again and again[0]["pts"] < 1.0, again[:1]
