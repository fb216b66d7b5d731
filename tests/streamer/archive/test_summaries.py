"""Summaries in the archive: the table, a file's summary and chapters (`--summary`), a live
stream's window summaries (`--summary-every`) shown to observers and written to JSON Lines,
all against the real llama-cpp-python server, and the runs that go on without it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time

import pytest
from live_helpers import wait_until
from media import parse_vtt, read_jsonl
from servers.llm_server import llm_server  # noqa: F401  (session fixture)

from bench.harness.browser import Chromium
from bench.harness.lmstudio import LmStudioDouble
from streamer import CaptionPolicy, OutputConfig, RunConfig, run_pipeline
from streamer.archive import Archive, Chapter, EncoderSpec, MomentRef, Summary
from streamer.archive.options import ArchiveConfig
from streamer.cli.main import main
from streamer.config import ServeConfig
from streamer.core.events import Observer
from streamer.errors import ArchiveError, ConfigError
from streamer.llm import LlmConfig
from streamer.watch.web import WebViewer
from streamer.watch.web._events import EventHub

DOWN = LlmConfig(url="http://127.0.0.1:9/v1", connect_timeout=1.0)
T0 = 1.7e9


def _summary(stream: str = "door", start: float = T0, **changes) -> Summary:
    fields = dict(
        stream=stream, kind="window", start_wall=start, end_wall=start + 600, start_media=0.0,
        end_media=600.0, text="A van came [door @ 12:03:04].",
        cited=(MomentRef(stream, 184.0, start + 184.0),), model="smollm2", made_at=start + 601,
    )  # fmt: skip
    return Summary(**{**fields, **changes})


def _index_keys(archive: Archive) -> set[tuple[str, float]]:
    rows = archive.table().lance.search().select(["stream", "media_time"]).limit(None).to_arrow()
    return {(row["stream"], row["media_time"]) for row in rows.to_pylist()}


# --- the table ----------------------------------------------------------------------------------


def test_summaries_are_stored_and_read_back_by_stream_and_overlapping_span(tmp_path, tiny_encoder):
    root = tmp_path / "arch"
    chapters = (Chapter(0.0, 30.0, "Opening", "llm"), Chapter(30.0, 61.5, "A dog, grass", "tags"))
    stored = [
        _summary(),
        _summary(start=T0 + 3600),
        _summary("talk", kind="file", media_path="/v/talk.mp4", chapters=chapters, model=None),
    ]
    with Archive.create(root, EncoderSpec.of(tiny_encoder)) as archive:
        archive.add_summaries(stored)
    archive = Archive(root)
    assert archive.summaries() == sorted(stored, key=lambda s: (s.start_wall, s.stream))
    assert archive.summaries(stream="talk")[0].chapters == chapters
    assert archive.summaries(stream="door", since=T0 + 700) == [stored[1]]
    assert archive.summaries(stream="door", until=T0 + 100, since=T0 + 50) == [stored[0]]
    assert archive.summaries(limit=1) == [stored[1]]
    with pytest.raises(ConfigError, match="--since"):
        archive.summaries(since=T0 + 10, until=T0)
    with pytest.raises(ArchiveError, match="opened for reading"):
        archive.add_summaries(stored)


def test_an_archive_without_summaries_lists_none_and_a_summary_cites_its_own_stream(
    tmp_path, tiny_encoder
):
    root = tmp_path / "arch"
    with Archive.create(root, EncoderSpec.of(tiny_encoder)) as archive:
        assert Archive(root).summaries() == []
        with pytest.raises(ValueError, match="its own stream"):
            archive.add_summaries([_summary(cited=(MomentRef("yard", 1.0, T0),))])


def test_the_viewer_gets_a_summary_event_with_its_span_and_citations():
    hub = EventHub(history=10, queue_size=10)
    client = hub.subscribe()
    record = hub.summary("door", _summary())
    assert record["text"] == "A van came [door @ 12:03:04]." and record["kind"] == "window"
    assert (record["start_wall"], record["wall"]) == (T0, T0 + 600)
    assert record["cited"] == [{"pts": 184.0, "wall": T0 + 184.0}]
    message = client.queue.get_nowait()
    assert message.startswith(b"id: 1\nevent: summary\ndata: {")
    assert hub.records("summary", "door") == [record]


# --- options ------------------------------------------------------------------------------------


def test_summary_options_need_an_archive_and_summaries_of_windows_an_llm(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--summary-every asks the LLM"):
        RunConfig(input="a.mp4", archive=ArchiveConfig("arch", summary_every_s=60.0), llm=None)
    RunConfig(input="a.mp4", archive=ArchiveConfig("arch", summary=True), llm=None)  # tags only
    assert main(["run", "a.mp4", "--jsonl", "a.jsonl", "--summary"]) == 2
    assert "--summary needs --archive DIR" in capsys.readouterr().err
    code = main(["run", "a.mp4", "--archive", str(tmp_path), "--summary-every", "10m", "--no-llm"])
    assert code == 2 and "--summary-every asks the LLM" in capsys.readouterr().err


# --- files --------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
async def test_a_file_gets_a_summary_and_chapters_from_the_real_llm(
    tmp_path,
    small_clip,
    tiny_encoder,
    llm_server,  # noqa: F811
):
    arch = tmp_path / "arch"
    config = RunConfig(
        input=str(small_clip),
        outputs=OutputConfig(video=str(tmp_path / "out.mp4"), jsonl=str(tmp_path / "a.jsonl")),
        archive=ArchiveConfig(str(arch), index_every_s=0.5, summary=True),
        llm=LlmConfig(url=llm_server.url),
        captions=CaptionPolicy(min_interval=30.0, max_age=30.0),  # one caption: a faster test
    )
    await run_pipeline(config, encoder=tiny_encoder)
    cues = parse_vtt((tmp_path / "out.chapters.vtt").read_text())
    assert cues and cues[0][0] == 0.0 and cues[-1][1] == pytest.approx(2.0, abs=0.1)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cues))  # no gap, no overlap
    (record,) = [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "summary"]
    assert record["kind"] == "file" and record["text"] and "start_wall" not in record
    assert [c["title"] for c in record["chapters"]] == [text for _, _, text in cues]
    archive = Archive(arch)
    (summary,) = archive.summaries()
    print(f"\nsummary: {summary.text!r}\nchapters: {summary.chapters}")
    assert (summary.stream, summary.kind, summary.model) == ("small", "file", llm_server.model)
    assert summary.media_path == os.path.abspath(small_clip) and summary.text == record["text"]
    keys = _index_keys(archive)
    assert all((ref.stream, ref.media_time) in keys for ref in summary.cited)


@pytest.mark.integration
async def test_with_the_llm_down_a_file_gets_chapters_from_its_tags_and_no_summary(
    tmp_path, small_clip, tiny_encoder, caplog
):
    arch = tmp_path / "arch"
    config = RunConfig(
        input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
        archive=ArchiveConfig(str(arch), index_every_s=0.5, summary=True), llm=DOWN,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="streamer"):
        summary = await run_pipeline(config, encoder=tiny_encoder)
    assert summary.frames == 50
    assert "no LLM to summarise the files" in caplog.text
    cues = parse_vtt((arch / "chapters" / "small.chapters.vtt").read_text())
    assert cues and all(text for _, _, text in cues)
    assert not [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "summary"]
    assert Archive(arch).summaries() == []


async def test_a_stopped_file_run_does_not_wait_for_the_llm_for_its_chapters(
    tmp_path, long_clip, tiny_encoder
):
    # The server answers its probe, then no chat request: captions pending at the stop take
    # the tags', and the chapters are titled by their tags instead of waiting on the LLM.
    double = LmStudioDouble(hang_after=0)
    await double.start()
    arch = tmp_path / "arch"
    stop = asyncio.Event()

    class StopAfterFrames(Observer):
        def analysis(self, stream: str, annotation) -> None:
            if annotation.pts >= 2.0:
                stop.set()

    config = RunConfig(
        input=f"talk={long_clip}", outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
        archive=ArchiveConfig(str(arch), index_every_s=0.5, summary=True),
        llm=LlmConfig(url=double.url, vision=False, read_timeout=60.0),
    )  # fmt: skip
    try:
        started = time.monotonic()
        run = run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[StopAfterFrames()])
        summary = await asyncio.wait_for(run, 40)
        took = time.monotonic() - started
    finally:
        await double.stop()
    assert summary.interrupted and took < 30  # not the 60 s a title would wait
    cues = parse_vtt((arch / "chapters" / "talk.chapters.vtt").read_text())
    assert cues and all(text for _, _, text in cues)
    assert not [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "summary"]


# --- live streams -------------------------------------------------------------------------------


class _Summaries(Observer):
    """Keeps the summaries the run tells its observers; stops the run after `enough`."""

    def __init__(self, stop: asyncio.Event, enough: int = 1) -> None:
        self.done, self.enough, self.seen, self.run = stop, enough, [], None

    async def start(self, run):
        self.run = run

    def summary(self, stream, summary):
        self.seen.append((stream, summary))
        if len(self.seen) >= self.enough:
            self.done.set()


@pytest.mark.integration
@pytest.mark.slow
async def test_a_live_stream_is_summarised_every_window_by_the_real_llm(
    tmp_path,
    rtsp_server,
    tiny_encoder,
    llm_server,  # noqa: F811
):
    arch, stop = tmp_path / "arch", asyncio.Event()
    watcher = _Summaries(stop)
    config = RunConfig(
        input=f"door={rtsp_server.url('cam2')}",
        outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
        archive=ArchiveConfig(str(arch), index_every_s=0.5, summary_every_s=2.0),
        llm=LlmConfig(url=llm_server.url, slow_after=300.0),
        captions=CaptionPolicy(min_interval=30.0, max_age=30.0),  # the one slot: for summaries
    )  # fmt: skip
    started = time.time()
    await asyncio.wait_for(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[watcher]), 240
    )
    (stream, told), *_ = watcher.seen
    print(f"\nwindow summary: {told.text!r}")
    assert stream == "door" and told.kind == "window" and told.text
    assert started <= told.start_wall < told.end_wall <= time.time()
    archive = Archive(arch)
    assert told in archive.summaries()
    keys = _index_keys(archive)
    assert all((ref.stream, ref.media_time) in keys for ref in told.cited)
    records = [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "summary"]
    assert records[0]["text"] == told.text
    assert records[0]["end_wall"] == pytest.approx(told.end_wall, abs=1e-3)


@pytest.mark.integration
async def test_with_the_llm_down_a_live_run_goes_on_without_summaries(
    tmp_path, small_clip, tiny_encoder, caplog
):
    arch = tmp_path / "arch"
    config = RunConfig(
        input=str(small_clip), live=True, outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
        archive=ArchiveConfig(str(arch), index_every_s=0.5, summary_every_s=0.5), llm=DOWN,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="streamer"):
        summary = await run_pipeline(config, encoder=tiny_encoder)
    assert summary.frames >= 45  # the video went on at its pace
    assert "no summary of small" in caplog.text and "127.0.0.1:9" in caplog.text
    assert Archive(arch).summaries() == []


# --- the viewer ---------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
async def test_the_viewer_page_shows_a_window_summary_with_its_citations(
    tmp_path, long_clip, tiny_encoder
):
    """Headless Chromium on the viewer of a live run; the summary's text comes from the double
    (what the page does with it is the point, not what a tiny model writes)."""

    def answer(body, count):
        system = body["messages"][0]["content"]
        return "A rabbit crossed the meadow [1]." if "summarise" in system else "A rabbit."

    stop = asyncio.Event()
    watcher = _Summaries(stop, enough=10**6)  # never stops the run by itself
    async with LmStudioDouble(answer=answer) as server, Chromium.launch() as browser:
        config = RunConfig(
            input=f"cam={long_clip}", live=True, serve=ServeConfig(port=0),
            archive=ArchiveConfig(str(tmp_path / "arch"), index_every_s=0.5,
                                  summary_every_s=1.0),
            llm=LlmConfig(url=server.url), captions=CaptionPolicy(min_interval=30.0, max_age=30.0),
        )  # fmt: skip
        run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                               observers=[watcher]))  # fmt: skip
        try:
            await wait_until(lambda: watcher.run is not None or run.done(), 60, "the run")
            viewer = next(o for o in watcher.run.observers.items if isinstance(o, WebViewer))
            await wait_until(lambda: viewer.url is not None, 30, "the viewer")
            page = await browser.new_page()
            await page.goto(viewer.url)
            shown = "document.querySelector('[data-stream=\"cam\"] .summary')"
            await page.wait_for(f"{shown} && !{shown}.hidden", 60, "a summary on the page")
            text = await page.evaluate(f"{shown}.textContent")
            history = await page.evaluate(
                "document.querySelector('[data-stream=\"cam\"] .history').innerText"
            )
        finally:
            stop.set()
            await asyncio.wait_for(run, 60)
    assert not page.errors
    # a file played live: its moments are shown at their media time (H:MM:SS.s)
    assert re.search(r"A rabbit crossed the meadow \[cam @ \d:\d\d:\d\d\.\d\]\.$", text), text
    assert "summary: A rabbit crossed the meadow [cam @ " in history
    assert watcher.seen[0][1].text in text
