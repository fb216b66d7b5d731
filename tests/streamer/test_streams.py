"""Several streams in one run, and the live contract (freshest frame wins), on real clips."""

import asyncio
import logging
import time

import pytest
from media import ffprobe, read_jsonl, video_stream

from streamer import AnalysisConfig, ConfigError, OutputConfig, RunConfig, run_pipeline
from streamer.core.batcher import BatchPolicy

pytestmark = pytest.mark.integration


class SlowEncoder:
    """The tiny CLIP with a slow embedding: an analyser that cannot keep up with the video."""

    def __init__(self, encoder, seconds: float) -> None:
        self._encoder = encoder
        self._seconds = seconds
        self.batches: list[int] = []

    def _wait(self, images) -> None:
        self.batches.append(len(images))
        time.sleep(self._seconds)

    def embed_array(self, images):  # what the analysis worker calls
        self._wait(images)
        return self._encoder.embed_array(images)

    def embed(self, images):
        self._wait(images)
        return self._encoder.embed(images)

    def __getattr__(self, name):
        return getattr(self._encoder, name)


async def test_two_files_in_one_run_each_get_every_frame_and_their_own_outputs(
    tmp_path, small_clip, sample_clip, tiny_encoder
):
    outputs = OutputConfig(
        video=str(tmp_path / "{stream}.mp4"), jsonl=str(tmp_path / "{stream}.jsonl"),
        preset="ultrafast",
    )  # fmt: skip
    config = RunConfig(input=(str(small_clip), str(sample_clip)), outputs=outputs)
    summary = await run_pipeline(config, encoder=tiny_encoder)
    by_name = {s.name: s for s in summary.streams}
    assert by_name["small"].frames == 50 and by_name["bigbuckbunny"].frames == 132
    assert video_stream(ffprobe(tmp_path / "small.mp4"))["nb_read_frames"] == "50"
    assert video_stream(ffprobe(tmp_path / "bigbuckbunny.mp4"))["nb_read_frames"] == "132"
    for name in ("small", "bigbuckbunny"):
        records = read_jsonl(tmp_path / f"{name}.jsonl")
        assert records and {r["stream"] for r in records} == {name}
    assert all(s.dropped == 0 for s in summary.streams)  # files: nothing dropped


async def test_same_input_twice_gets_distinct_names(tmp_path, small_clip, tiny_encoder):
    config = RunConfig(input=(str(small_clip), str(small_clip)),
                       outputs=OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl")))  # fmt: skip
    summary = await run_pipeline(config, encoder=tiny_encoder)
    assert [s.name for s in summary.streams] == ["small", "small-2"]
    assert (tmp_path / "small-2.jsonl").exists()


async def test_several_streams_need_stream_in_output_names(tmp_path, small_clip, tiny_encoder):
    config = RunConfig(input=(str(small_clip), str(small_clip)),
                       outputs=OutputConfig(video=str(tmp_path / "out.mp4")))  # fmt: skip
    with pytest.raises(ConfigError, match=r"put '\{stream\}' in output names"):
        await run_pipeline(config, encoder=tiny_encoder)


@pytest.mark.slow
async def test_live_contract_with_a_slow_analyser_keeps_latency_bounded_and_counts_drops(
    tmp_path, small_clip, tiny_encoder
):
    slow = SlowEncoder(tiny_encoder, seconds=1.0)
    config = RunConfig(
        input=str(small_clip), live=True,
        outputs=OutputConfig(video=str(tmp_path / "a.mp4"), jsonl=str(tmp_path / "a.jsonl"),
                             preset="ultrafast"),
        analysis=AnalysisConfig(analyze_fps=10.0),
    )  # fmt: skip
    summary = await run_pipeline(config, encoder=slow)
    (stream,) = summary.streams
    # The analyser manages ~1 frame/s of the 10 asked for: analysis frames are dropped and
    # counted, the video is not held back by it.
    assert stream.dropped > 0
    assert stream.analysed < 15
    assert stream.frames >= 40  # of 50: the writer keeps up, so almost every frame is shown
    _, _, p99 = stream.latency_ms
    # A frame that waited for the analyser would be at least 1000 ms late; a live frame that
    # does not wait is a few tens of ms late, a few hundred on a loaded machine.
    assert p99 < 500, f"live frames waited for the analyser: p99 {p99:.0f} ms"
    assert int(video_stream(ffprobe(tmp_path / "a.mp4"))["nb_read_frames"]) == stream.frames
    records = read_jsonl(tmp_path / "a.jsonl")
    assert all("wall" in r for r in records if r["type"] == "analysis")


async def test_file_contract_with_the_same_slow_analyser_waits_and_drops_nothing(
    tmp_path, small_clip, tiny_encoder
):
    slow = SlowEncoder(tiny_encoder, seconds=0.05)
    config = RunConfig(input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
                       analysis=AnalysisConfig(analyze_fps=10.0))  # fmt: skip
    summary = await run_pipeline(config, encoder=slow)
    (stream,) = summary.streams
    assert stream.dropped == 0 and stream.frames == 50 and stream.analysed == 20


async def test_a_live_stream_whose_analysis_cannot_keep_up_says_so_under_the_table(
    tmp_path, long_clip, tiny_encoder, caplog, capsys
):
    slow = SlowEncoder(tiny_encoder, seconds=0.3)  # about 3 analyses a second
    config = RunConfig(input=f"cam={long_clip}", live=True, status_every=0.5,
                       outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
                       analysis=AnalysisConfig(analyze_fps=10.0,
                                               batch=BatchPolicy(max_batch=1)))  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=slow, stop=stop, progress=True))
    await asyncio.sleep(4.0)
    stop.set()
    await asyncio.wait_for(run, 30)
    notes = [line for line in capsys.readouterr().err.splitlines() if "cannot keep up" in line]
    assert notes and notes[0].startswith("cam: analyses ")
    assert "of the 10.0 frames/s asked" in notes[0] and "--int8" in notes[0]
    warned = [r for r in caplog.records if "cannot keep up" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING  # once, for the log


async def test_an_output_that_would_overwrite_an_input_is_refused(
    tmp_path, small_clip, tiny_encoder
):
    clip = tmp_path / "cam.mp4"
    clip.write_bytes(small_clip.read_bytes())
    config = RunConfig(input=str(clip), outputs=OutputConfig(video=str(tmp_path / "{stream}.mp4")))
    with pytest.raises(ConfigError, match="is an input of this run"):
        await run_pipeline(config, encoder=tiny_encoder)
    assert clip.read_bytes() == small_clip.read_bytes()


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"srt": "t.srt", "vtt": "t.srt"}, "--srt and --vtt both name"),
        ({"video": "t.mp4", "jsonl": "./t.mp4"}, "-o and --jsonl both name"),
        ({"video": "{stream}.mp4", "srt": "small.mp4"}, "-o and --srt both name"),
        ({"video": "t"}, "has no extension to tell the video's container"),
        ({"jsonl": "{date}.jsonl"}, r"\{date\} is not a placeholder"),
        ({"srt": "-"}, r"--srt -: only --jsonl writes to standard output"),
        ({"video": "-", "jsonl": "-"}, r"-o -: only --jsonl writes to standard output"),
    ],
    ids=[
        "srt-vtt",
        "video-jsonl",
        "filled-placeholder",
        "no-extension",
        "unknown-placeholder",
        "srt-stdout",
        "video-stdout",
    ],
)
def test_outputs_that_would_mix_or_misname_are_refused_before_any_work(
    tmp_path, monkeypatch, outputs, message
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        OutputConfig(**outputs).check(["small"])
    assert list(tmp_path.iterdir()) == []


def test_every_stream_may_write_its_records_to_standard_output(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    OutputConfig(jsonl="-", srt="{stream}.srt").check(["door", "yard"])  # no error
    with pytest.raises(ConfigError, match=r"2 streams would write the same file 'a\.srt'"):
        OutputConfig(jsonl="-", srt="a.srt").check(["door", "yard"])
    assert list(tmp_path.iterdir()) == []  # nothing named '-' made


async def test_inputs_can_be_named(tmp_path, small_clip, tiny_encoder):
    config = RunConfig(input=(f"door={small_clip}", f"yard={small_clip}"),
                       outputs=OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl")))  # fmt: skip
    summary = await run_pipeline(config, encoder=tiny_encoder)
    assert [s.name for s in summary.streams] == ["door", "yard"]
    assert {r["stream"] for r in read_jsonl(tmp_path / "yard.jsonl")} == {"yard"}


def test_split_stream_name():
    from streamer.sources import split_stream_name

    assert split_stream_name("door=rtsp://u:p@cam/1") == ("door", "rtsp://u:p@cam/1")
    assert split_stream_name("rtsp://cam/1?a=b") == (None, "rtsp://cam/1?a=b")
    assert split_stream_name("0") == (None, "0")


@pytest.mark.parametrize("queue_frames", [2, 5, 8, 32, 48])
def test_a_file_streams_frames_in_flight_mostly_wait_after_the_route(queue_frames):
    from streamer.stream import FILE_DECODED, LIVE_QUEUE, _capacities

    decoded, routed = _capacities(False, queue_frames)
    assert decoded + routed == 2 * queue_frames  # the memory bound --queue-frames promises
    assert decoded == min(FILE_DECODED, queue_frames) and routed >= decoded
    assert _capacities(True, queue_frames) == (LIVE_QUEUE, LIVE_QUEUE)
