"""The file pipeline end to end, in-process, with the tiny CLIP and real clips."""

import asyncio
import threading
import time
from dataclasses import replace

import pytest
from media import ffprobe, parse_srt, parse_vtt, read_jsonl, stream_types, video_stream

from streamer import AnalysisConfig, OutputConfig, RunConfig, run_pipeline
from streamer.core.batcher import BatchPolicy

pytestmark = pytest.mark.integration


def _config(clip, out, **analysis):
    return RunConfig(
        input=str(clip),
        outputs=OutputConfig(
            video=str(out / "a.mp4"),
            srt=str(out / "a.srt"),
            vtt=str(out / "a.vtt"),
            jsonl=str(out / "a.jsonl"),
            preset="ultrafast",
        ),
        analysis=AnalysisConfig(**analysis),
    )


async def test_every_frame_written_with_timing_audio_and_records(
    tmp_path, small_clip, tiny_encoder
):
    summary = await run_pipeline(_config(small_clip, tmp_path), encoder=tiny_encoder)
    source, written = ffprobe(small_clip), ffprobe(tmp_path / "a.mp4")
    assert video_stream(written)["nb_read_frames"] == video_stream(source)["nb_read_frames"] == "50"
    assert float(video_stream(written)["duration"]) == pytest.approx(
        float(video_stream(source)["duration"]), abs=0.04
    )
    assert stream_types(written) == ["video", "audio"]  # audio copied through
    assert summary.frames == 50 and not summary.interrupted and summary.incomplete is None

    records = read_jsonl(tmp_path / "a.jsonl")
    analysed = [r for r in records if r["type"] == "analysis"]
    captions = [r for r in records if r["type"] == "caption"]
    assert [r["frame"] for r in analysed] == [0, 13, 25, 38]  # 2 fps on a 25 fps grid
    assert summary.analysed == 4
    for r in analysed:
        assert len(r["tags"]) == 3 and r["stream"] == "small" and r["scene_score"] >= 0
    assert captions and captions[0]["frame"] == 0 and captions[0]["source"] == "tags"

    srt = parse_srt((tmp_path / "a.srt").read_text())
    vtt = parse_vtt((tmp_path / "a.vtt").read_text())
    assert len(srt) == len(vtt) == len(captions)
    assert srt[0][0] == 0.0 and srt[-1][1] == pytest.approx(2.0, abs=0.05)
    assert summary.loop_lag_max_s < 0.5, "something blocked the event loop"


async def test_same_input_gives_identical_records_and_subtitles(tmp_path, small_clip, tiny_encoder):
    runs = []
    for name in ("one", "two"):
        out = tmp_path / name
        out.mkdir()
        await run_pipeline(_config(small_clip, out, analyze_fps=5.0), encoder=tiny_encoder)
        runs.append(((out / "a.jsonl").read_text(), (out / "a.srt").read_text()))
    assert runs[0] == runs[1]


async def test_analyze_every_frame(tmp_path, small_clip, tiny_encoder):
    summary = await run_pipeline(
        _config(small_clip, tmp_path, analyze_fps=None), encoder=tiny_encoder
    )
    analysed = [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "analysis"]
    assert summary.analysed == len(analysed) == 50


@pytest.mark.parametrize("path", ["small/index.m3u8", "small.mp4"])
async def test_a_finished_hls_playlist_or_remote_file_is_annotated_like_the_file(
    tmp_path, small_clip, hls_server, tiny_encoder, path
):
    # Served far faster than real time: under the live contract, analysis sampled on the wall
    # clock took 1 frame of the 4 the same clip gives as a file.
    remote = RunConfig(input=hls_server.url(path),
                       outputs=OutputConfig(jsonl=str(tmp_path / "remote.jsonl")))  # fmt: skip
    local = RunConfig(input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))
    summary = await run_pipeline(remote, encoder=tiny_encoder)
    await run_pipeline(local, encoder=tiny_encoder)

    def analysed(name):
        records = read_jsonl(tmp_path / name)
        return [(r["frame"], r["pts"], r["tags"]) for r in records if r["type"] == "analysis"]

    assert summary.frames == 50 and summary.analysed == 4 and summary.streams[0].dropped == 0
    # The same frames, tags and times: the playlist's MPEG-TS segments start at 1.4 s, which a
    # player shows as 0, as the file's outputs do.
    assert analysed("remote.jsonl") == analysed("a.jsonl")


async def test_a_writer_waiting_for_its_analysis_does_not_wait_for_the_batch_deadline(
    tmp_path, small_clip, tiny_encoder
):
    # A minute's deadline and batches of 8, with 4 frames in flight: the analysis of frame 0
    # shares its batch with at most one other, so only the writer's hurry sends it.
    config = _config(small_clip, tmp_path, batch=BatchPolicy(max_batch=8, max_wait_ms=60_000))
    config = replace(config, queue_frames=2)
    summary = await asyncio.wait_for(run_pipeline(config, encoder=tiny_encoder), 30)
    assert summary.frames == 50 and summary.analysed == 4


async def test_stop_finalises_playable_outputs(tmp_path, long_clip, tiny_encoder):
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_pipeline(_config(long_clip, tmp_path), encoder=tiny_encoder, stop=stop)
    )
    await asyncio.sleep(1.0)
    stop.set()
    summary = await asyncio.wait_for(run, 30)
    assert summary.interrupted and 0 < summary.frames < 792
    assert int(video_stream(ffprobe(tmp_path / "a.mp4"))["nb_read_frames"]) == summary.frames
    parse_srt((tmp_path / "a.srt").read_text())
    read_jsonl(tmp_path / "a.jsonl")


async def test_a_stop_while_the_model_loads_ends_the_run_at_once(tmp_path, small_clip, monkeypatch):
    # A first run exports its model for seconds; Ctrl-C then must not wait for the export.
    import streamer.analysis.worker
    from encoders.abandon import LoadAbandoned, check_abandoned

    outcome = []

    def exporting(choice, *, export_in_background):  # a load that only ends when given up
        try:
            for _ in range(600):
                time.sleep(0.05)
                check_abandoned()
        except LoadAbandoned as exc:
            outcome.append(exc)
            raise
        raise AssertionError("the load was never abandoned")

    monkeypatch.setattr(streamer.analysis.worker, "load_encoder", exporting)
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(_config(small_clip, tmp_path), stop=stop))
    await asyncio.sleep(0.5)
    stop.set()
    summary = await asyncio.wait_for(run, 5)
    assert summary.interrupted and summary.frames == summary.analysed == 0
    assert list(tmp_path.iterdir()) == []  # no output was begun
    for _ in range(40):  # the load's thread stops at its next check
        if outcome:
            break
        await asyncio.sleep(0.05)
    assert outcome, "the abandoned load went on"


@pytest.mark.parametrize(("live", "in_background"), [(False, False), (True, True)])
async def test_a_live_run_makes_a_missing_export_beside_its_first_frames(
    tmp_path, small_clip, tiny_encoder, monkeypatch, live, in_background
):
    # live: analysed seconds sooner; a file run, whose user waits for the whole file, exports
    # first (a child's model build and conversion beside the run make a 2-core run longer)
    import streamer.analysis.worker

    asked = []

    def load(choice, *, export_in_background):
        asked.append(export_in_background)
        return tiny_encoder

    monkeypatch.setattr(streamer.analysis.worker, "load_encoder", load)
    summary = await run_pipeline(replace(_config(small_clip, tmp_path), live=live))
    assert summary.frames > 0 and asked == [in_background]


async def test_a_stop_during_the_label_embeddings_ends_the_run_at_once(
    tmp_path, small_clip, tiny_encoder, monkeypatch
):
    # A first run embeds its label set through the text tower (seconds, once per model);
    # Ctrl-C then must not wait for it: the run ends, its files closed with nothing in them.
    import streamer.analysis.worker
    import streamer.pipeline

    released = threading.Event()

    class FirstRun:  # the tiny CLIP with a text tower as slow as a first run's
        def embed_text_array(self, texts):
            released.wait(30)
            return tiny_encoder.embed_text_array(texts)

        def __getattr__(self, name):
            return getattr(tiny_encoder, name)

    async def uncached(cache, info, texts, embed):
        return await embed(texts)

    monkeypatch.setattr(streamer.pipeline, "cached_text_embeddings", uncached)
    monkeypatch.setattr(streamer.analysis.worker, "load_encoder", lambda choice, **_: FirstRun())
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(_config(small_clip, tmp_path), stop=stop))
    await asyncio.sleep(1.0)
    stop.set()
    began = time.monotonic()
    try:
        summary = await asyncio.wait_for(run, 10)
        waited = time.monotonic() - began
    finally:
        released.set()
    assert waited < 2.0  # not the 30 s the embedding would take
    assert summary.interrupted and summary.frames == summary.analysed == 0
    assert parse_srt((tmp_path / "a.srt").read_text()) == []
    assert read_jsonl(tmp_path / "a.jsonl") == []
    assert not (tmp_path / "a.mp4").exists()


async def test_the_summary_times_the_streams_not_the_label_embeddings(
    tmp_path, small_clip, tiny_encoder, slow_label_embeddings
):
    # A first run embeds its label set (seconds); the summary's fps is the video's, as the
    # progress bar's, not diluted by that.
    slow_label_embeddings(1.5)
    began = time.monotonic()
    summary = await run_pipeline(_config(small_clip, tmp_path), encoder=tiny_encoder)
    assert summary.frames == 50
    assert summary.wall_s < time.monotonic() - began - 1.4


async def test_encoder_without_text_tower_gives_scene_scores_only(tmp_path, small_clip):
    import encoders

    encoder = encoders.create_encoder("default", weights="random", device="cpu")
    config = RunConfig(input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))
    summary = await run_pipeline(config, encoder=encoder)
    records = read_jsonl(tmp_path / "a.jsonl")
    assert summary.random_weights
    assert all(r["tags"] == [] for r in records if r["type"] == "analysis")
    assert any(r["scene_score"] > 0 for r in records if r["type"] == "analysis")
