"""Runs with `--archive DIR`: what a file or a live stream leaves behind, and the commands that
read it back (`streamer search`, `streamer archive info|prune`). Real clips, a real RTSP server,
a real LanceDB table, the tiny random CLIP."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from media import ffprobe, video_stream

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.archive import Archive, EncoderSpec
from streamer.archive.embedder import Embedder
from streamer.archive.options import ArchiveConfig
from streamer.archive.recordings import segments
from streamer.archive.retention import apply_retention
from streamer.cli.main import main
from streamer.core.events import Observer

TINY = ["--model", "tiny", "--weights", "random", "--no-llm", "--no-progress", "--no-cache"]


def _frame_at(clip: Path, when: float) -> np.ndarray:
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            if frame.time >= when:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {when} s in {clip}")


async def test_a_file_indexed_again_replaces_its_moments_and_a_stopped_run_keeps_them(
    tmp_path, small_clip, long_clip, tiny_encoder, caplog
):
    # Twice the same file was every moment twice in every search.
    caplog.set_level(logging.INFO, "streamer.archive")
    folder = tmp_path / "arch"
    archive = ArchiveConfig(str(folder), index_every_s=0.5)

    def rows() -> dict[tuple[str, str], list[float]]:
        seen = Archive(folder, embedder=Embedder.of(tiny_encoder, EncoderSpec.of(tiny_encoder)))
        table = seen.table().lance.search().select(["stream", "media_path", "wall_time"])
        found: dict[tuple[str, str], list[float]] = {}
        for row in table.limit(None).to_arrow().to_pylist():
            found.setdefault((row["stream"], Path(row["media_path"]).name), []).append(
                row["wall_time"]
            )
        seen.close()
        return found

    await run_pipeline(RunConfig(input=f"clip={small_clip}", archive=archive), encoder=tiny_encoder)
    await run_pipeline(RunConfig(input=f"long={long_clip}", archive=archive), encoder=tiny_encoder)
    first = rows()
    await run_pipeline(RunConfig(input=f"clip={small_clip}", archive=archive), encoder=tiny_encoder)
    second = rows()
    assert len(second[("clip", small_clip.name)]) == len(first[("clip", small_clip.name)]) >= 3
    assert min(second[("clip", small_clip.name)]) > max(first[("clip", small_clip.name)])
    assert second[("long", long_clip.name)] == first[("long", long_clip.name)]  # not another's
    assert "moments of an earlier run of" in caplog.text
    # A run stopped before the file's end keeps the earlier run's moments beside its own.
    stop = asyncio.Event()

    class StopAfterAFewFrames(Observer):
        def analysis(self, stream: str, annotation) -> None:
            if annotation.pts >= 2.0:  # the archive has rows by then (one per 0.5 s)
                stop.set()

    config = RunConfig(input=f"long={long_clip}", archive=archive)
    observers = [StopAfterAFewFrames()]
    summary = await run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=observers)
    assert summary.interrupted
    assert set(rows()[("long", long_clip.name)]) > set(first[("long", long_clip.name)])


def _streamer(
    *args: object, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamer", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})  # fmt: skip


async def test_a_file_run_indexes_its_moments_and_finds_a_frame_by_its_picture(
    tmp_path, small_clip, tiny_encoder
):
    archive_dir = tmp_path / "arch"
    config = RunConfig(
        input=str(small_clip), outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
        archive=ArchiveConfig(str(archive_dir), index_every_s=0.5),
    )  # fmt: skip
    summary = await run_pipeline(config, encoder=tiny_encoder)
    assert summary.frames == 50
    archive = Archive(archive_dir, embedder=Embedder.of(tiny_encoder, EncoderSpec.of(tiny_encoder)))
    info = archive.info()
    (stream,) = info.streams
    assert stream.stream == "small" and stream.rows == info.rows >= 3  # 2 s of media, ≥ 0.5 s
    assert stream.first_media == 0.0 and stream.last_media <= 2.0
    assert info.recordings_bytes == 0  # a file is referenced, not copied
    for when in (0.0, 1.0, 1.5):
        (hit, *_) = archive.search(image=_frame_at(small_clip, when), k=3)
        assert abs(hit.moment.media_time - when) <= 1.0, (when, hit.moment.media_time)
    moment = hit.moment
    assert moment.media_path == str(small_clip.resolve()) and moment.media_size > 0
    assert moment.caption and moment.caption_source == "tags"  # the caption in force there
    assert moment.thumbnail[:2] == b"\xff\xd8"  # a JPEG
    # The Python API cuts a clip around a hit, from the file itself.
    clip = archive.clip(hit, tmp_path / "clips" / "hit.mp4", before=0.5, after=0.5)
    played = float(video_stream(ffprobe(clip.path))["duration"])
    wanted = (moment.media_time - 0.5, min(moment.media_time + 0.5, 2.0))  # the clip is 2 s
    assert clip.start <= wanted[0] + 0.05 and clip.end >= wanted[1] - 0.05, (clip, wanted)
    assert abs(played - (clip.end - clip.start)) <= 0.1, (played, clip)  # what it says it holds
    archive.close()


@pytest.mark.integration
def test_the_commands_index_search_clip_and_describe_an_archive(tmp_path, small_clip):
    # The run keeps its encoder's export in its cache (backend auto: OpenVINO, when it is
    # installed), and the first search opens that export instead of building the model.
    arch, run_cache = tmp_path / "arch", {"XDG_CACHE_HOME": str(tmp_path / "run-cache")}
    done = _streamer("run", small_clip, "--archive", arch, "--index-every", "0.5s",
                     *TINY[:-1], cwd=tmp_path, env=run_cache)  # fmt: skip
    assert done.returncode == 0, done.stderr
    picture = tmp_path / "frame.png"
    av.VideoFrame.from_ndarray(_frame_at(small_clip, 1.0), format="rgb24").to_image().save(picture)
    done = _streamer("search", "--image", picture, "--archive", arch, "-k", "2", "--json",
                     "--clips", tmp_path / "clips", "--before", "0.5s", "--after", "0.5s",
                     "--thumbnails", tmp_path / "thumbs", cwd=tmp_path, env=run_cache)  # fmt: skip
    assert done.returncode == 0, done.stderr
    if importlib.util.find_spec("openvino") or importlib.util.find_spec("onnxruntime"):
        assert "opened from the export cache" in done.stderr, done.stderr
    hits = json.loads(done.stdout)
    assert len(hits) == 2 and abs(hits[0]["media_time"] - 1.0) <= 1.0
    assert Path(hits[0]["thumbnail"]).read_bytes()[:2] == b"\xff\xd8"
    clip = video_stream(ffprobe(hits[0]["clip"]))
    assert int(clip["nb_read_frames"]) >= 10  # about a second of 25 fps video
    # The table shows how well each hit matched (not the fused score, which only orders
    # them); with no export in its cache a search runs its encoder on torch and says no more
    # of it. Its thumbnails go to the cache, which forgets those no search has shown for a week.
    cached = tmp_path / "cache" / "streamer" / "search"
    cached.mkdir(parents=True)
    old, recent = cached / "cam-1.000.jpg", cached / "cam-2.000.jpg"
    for path, days in ((old, 8), (recent, 6)):
        path.write_bytes(b"\xff\xd8")
        os.utime(path, (time.time() - days * 86400,) * 2)
    done = _streamer("search", "--image", picture, "--archive", arch, "-k", "1", cwd=tmp_path,
                     env={"XDG_CACHE_HOME": str(tmp_path / "cache")})  # fmt: skip
    assert re.search(r"^ 1\. small @ .* similarity 0\.9\d\d", done.stdout), done.stdout
    assert "runs on torch" in done.stderr and "--no-cache" not in done.stderr, done.stderr
    assert not old.exists() and recent.exists()
    assert [p for p in cached.glob("small-*.jpg")], "the hit's thumbnail"
    done = _streamer("archive", "info", arch, "--json", cwd=tmp_path)
    info = json.loads(done.stdout)
    assert done.returncode == 0 and info["rows"] >= 3 and info["streams"][0]["stream"] == "small"
    assert info["encoder"] == "clip tiny (random, 64-d)"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["search", "--archive", "ARCH"], "words to look for, or a picture"),
        (["search", "x", "--archive", "ARCH", "--since", "1h ago", "--until", "2h ago"],
         "--since"),
        (["search", "x", "--archive", "ARCH", "--stream", "nope"], "nope"),
        (["run", "x.mp4", "--jsonl", "a.jsonl", "--segment", "10s"], "needs --archive DIR"),
        (["archive", "prune", "ARCH"], "--retain"),
    ],
    ids=["no-query", "since-after-until", "unknown-stream", "segment-alone", "prune-alone"],
)  # fmt: skip
def test_bad_queries_and_options_are_usage_errors(tmp_path, capsys, tiny_encoder, argv, words):
    arch = tmp_path / "arch"
    writer = Archive.create(arch, EncoderSpec.of(tiny_encoder))
    from streamer.archive.moments import Moment

    writer.writer().put(Moment("cam", 0.0, 1e9, np.ones(64, np.float32) / 8.0))
    writer.close()
    code = main([a.replace("ARCH", str(arch)) for a in argv])
    assert code == 2
    assert words in capsys.readouterr().err


def test_a_missing_archive_is_an_error_naming_it(tmp_path, capsys):
    assert main(["search", "x", "--archive", str(tmp_path / "none")]) == 1
    assert str(tmp_path / "none") in capsys.readouterr().err


@pytest.mark.slow
async def test_a_live_run_records_its_stream_and_indexes_it(tmp_path, rtsp_server, tiny_encoder):
    arch = tmp_path / "arch"
    config = RunConfig(
        input=f"door={rtsp_server.url('cam1')}",
        archive=ArchiveConfig(str(arch), segment_s=2.0, index_every_s=1.0),
    )
    stop = __import__("asyncio").Event()
    loop = __import__("asyncio").get_running_loop()
    loop.call_later(8.0, stop.set)
    await run_pipeline(config, encoder=tiny_encoder, stop=stop)
    recorded = segments(arch, "door")
    assert recorded and all((arch / s.path).exists() for s in recorded)
    assert int(video_stream(ffprobe(arch / recorded[0].path))["nb_read_frames"]) > 25
    archive = Archive(arch, embedder=Embedder.of(tiny_encoder, EncoderSpec.of(tiny_encoder)))
    (stream,) = archive.info().streams
    assert stream.stream == "door" and stream.rows >= 3
    first, last = recorded[0].start_wall, time.time()
    hits = archive.search(image=np.full((180, 320, 3), 128, np.uint8), k=50)
    assert all(first - 2.0 <= h.moment.wall_time <= last for h in hits)  # found in the recording
    assert all(h.moment.media_path is None for h in hits)  # live: the recording holds it
    # retention: everything older than "now + 1 h - 1 s" goes, the segment being written stays
    pruned = apply_retention(archive, retain_s=1.0, max_gb=None, now=time.time() + 3600)
    assert pruned.rows == stream.rows and pruned.segments == len(recorded), recorded
    assert archive.info().rows == 0 and not segments(arch, "door")
    archive.close()


@pytest.mark.integration
async def test_a_live_streams_rows_reach_the_index_while_it_runs(
    tmp_path, rtsp_server, tiny_encoder, monkeypatch
):
    """No caption ever settles the rows here (no LLM; the pattern's tag caption repeats, and a
    repeated caption is not passed on): they must still reach the index within `HOLD_S`, not
    wait for the end of the run or `HOLD_ROWS` picks (minutes at the default --index-every)."""
    from streamer.archive import observer

    monkeypatch.setattr(observer, "HOLD_S", 1.0)
    monkeypatch.setattr(observer, "HOLD_ROWS", 10**6)
    arch = tmp_path / "arch"
    config = RunConfig(input=f"door={rtsp_server.url('cam1')}",
                       archive=ArchiveConfig(str(arch), index_every_s=0.5))  # fmt: skip
    asyncio = __import__("asyncio")
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    rows_while_running = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and rows_while_running < 3 and not run.done():
        await asyncio.sleep(1.0)
        if (arch / "index").exists():
            with Archive(arch) as archive:
                rows_while_running = archive.info().rows
    stop.set()
    await run
    assert rows_while_running >= 3


@pytest.mark.integration
async def test_moments_held_for_their_caption_are_shown_waiting_then_indexed(
    tmp_path, rtsp_server, tiny_encoder, capfd
):
    """A live stream's rows wait up to `HOLD_S` (15 s) for a caption that may never settle
    them (no LLM; the pattern's tag caption repeats): meanwhile the status says how many
    wait, rather than showing an index that holds nothing, and they all reach it at the end."""
    from live_helpers import wait_until

    from streamer.config import ServeConfig
    from streamer.watch.web import WebViewer

    arch = tmp_path / "arch"
    viewer = WebViewer(ServeConfig(port=0))
    config = RunConfig(input=f"door={rtsp_server.url('cam1')}", status_every=0.5,
                       archive=ArchiveConfig(str(arch), index_every_s=0.2))  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, progress=True, observers=[viewer])
    )
    try:
        await wait_until(lambda: viewer.url is not None or run.done(), 60, "the viewer")
        moments = lambda: viewer.status()["archive"]["moments"]  # noqa: E731
        await wait_until(lambda: moments().get("waiting", 0) >= 3 or run.done(), 12,
                         "moments shown waiting for their caption")  # fmt: skip
        held = moments()
        await asyncio.sleep(1.0)  # a status line or two
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)
    assert held["waiting"] >= 3 and held["written"] < held["waiting"], held
    table = capfd.readouterr().err
    assert re.search(rf"archive {re.escape(str(arch))}: ok, \d+ moments \(\d+ waiting\)", table)
    with Archive(arch) as archive:  # held, then indexed: none lost
        assert archive.info().rows >= held["written"] + held["waiting"]
