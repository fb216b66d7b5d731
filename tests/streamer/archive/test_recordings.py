"""Recordings of live streams (`streamer.archive.recordings`): a real RTSP stream tapped into
fragmented-MP4 segments, a server restart, a `kill -9`, a full disk, and the catalogue read,
located in and pruned. Checked with ffprobe."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from live_helpers import FAST, Running, wait_until

from streamer.archive.recordings import Recorder, Segment, locate, prune, segments
from streamer.errors import ConfigError
from streamer.sources import SourceRunner, open_source
from streamer.sources.options import DecodePlan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[3]


class _Tapped:
    """Runs sources with `tap` (a runner for `Running`)."""

    def __init__(self, tap: Recorder) -> None:
        self.tap = tap

    def run(self, source, out, stop):
        return SourceRunner(DecodePlan()).run(source, out, stop, self.tap)


@dataclass
class Recorded:
    root: Path
    delivered: int  # frames the source delivered while it was recorded
    recorder: Recorder


async def _record(url: str, root: Path, stream: str, seconds: float, segment_s: float) -> Recorded:
    source = open_source(url, stream, options=FAST)
    recorder = Recorder(root, stream, segment_s=segment_s)
    async with Running(source, capacity=64, runner=_Tapped(recorder)) as run:
        await run.until(lambda: len(run.frames) >= 1, 20, "a first frame")
        await asyncio.sleep(seconds)
    return Recorded(root, source.status.frames, recorder)


@pytest.fixture(scope="module")
def recorded(rtsp_server, tmp_path_factory) -> Recorded:
    """About 7 s of the RTSP pattern (a key frame every second) in 2 s segments: the tests
    that use it are `slow`."""
    root = tmp_path_factory.mktemp("archive")
    return asyncio.run(_record(rtsp_server.url("cam1"), root, "cam1", 7.0, 2.0))


def _first_frame(probe, path: Path) -> dict:
    info = probe(path, "-select_streams", "v", "-show_frames", "-read_intervals", "%+#1")
    return info["frames"][0]


def _lines(root: Path, stream: str) -> list[bytes]:
    return (root / "recordings" / stream / "segments.jsonl").read_bytes().split(b"\n")


@pytest.mark.slow
def test_a_live_stream_is_cut_into_segments_that_each_play_from_a_key_frame(recorded, probe):
    found = segments(recorded.root)
    assert len(found) >= 3 and {s.stream for s in found} == {"cam1"}
    assert [s.reason for s in found] == ["start"] + ["time"] * (len(found) - 1)
    for segment in found:
        info = probe(recorded.root / segment.path)
        (video,) = info["streams"]
        assert video["codec_name"] == "h264" and int(video["nb_read_frames"]) == segment.frames
        first = _first_frame(probe, recorded.root / segment.path)
        assert first["key_frame"] == 1 and float(first["pts_time"]) == 0.0  # rebased to 0
        assert float(info["format"]["duration"]) == pytest.approx(segment.duration, abs=0.05)
        assert segment.complete and not segment.writing and segment.bytes > 0
        assert (segment.codec, segment.width, segment.height) == ("h264", 320, 180)
    # Cut at the first key frame after 2 s: with a key frame every second, exactly 2 s each
    # (the last one ends where the run stopped).
    assert all(s.duration == pytest.approx(2.0, abs=0.05) for s in found[:-1])
    for before, after in itertools.pairwise(found):  # one after the other, no gap, no overlap
        assert after.start_wall == pytest.approx(before.end_wall, abs=0.1)
        assert after.start_media == pytest.approx(before.start_media + before.duration, abs=0.05)
    # Everything delivered is recorded, but what came before the first key frame.
    recorded_frames = sum(s.frames for s in found)
    assert recorded.delivered - 25 - 2 <= recorded_frames <= recorded.delivered + 2
    state = recorded.recorder.state
    assert (state.state, state.files, state.dropped) == ("closed", len(found), 0)
    assert state.bytes == sum(s.bytes for s in found)
    lines = [line for line in _lines(recorded.root, "cam1") if line]
    assert [json.loads(line)["event"] for line in lines] == ["open", "close"] * len(found)


@pytest.mark.slow  # the recording it reads takes a few seconds
def test_locate_finds_the_segment_and_the_offset_in_it(recorded):
    found = segments(recorded.root, "cam1")
    for segment in found:
        hit = locate(recorded.root, "cam1", segment.start_wall + 0.25)
        assert hit is not None and hit[0] == segment and hit[1] == pytest.approx(0.25)
    hit = locate(recorded.root, "cam1", found[1].start_wall)
    assert hit is not None and hit[0] == found[1] and hit[1] == 0.0
    # A moment just before the first recording (a stream's first analysed frames come before
    # the first keyframe it records from) is at its start; one long before is not recorded.
    hit = locate(recorded.root, "cam1", found[0].start_wall - 0.5)
    assert hit is not None and hit[0] == found[0] and hit[1] == 0.0
    assert locate(recorded.root, "cam1", found[0].start_wall - 2.5) is None
    assert locate(recorded.root, "cam1", found[-1].end_wall + 1) is None  # none is written now
    assert locate(recorded.root, "elsewhere", found[0].start_wall) is None


def _copy(recorded: Recorded, tmp_path: Path) -> tuple[Path, list[Segment]]:
    root = tmp_path / "archive"
    shutil.copytree(recorded.root, root)
    return root, segments(root)


@pytest.mark.slow
def test_prune_by_age_removes_the_oldest_first(recorded, tmp_path):
    root, found = _copy(recorded, tmp_path)
    # Keep what ends after the middle of the second segment's span.
    horizon = (found[0].end_wall + found[1].end_wall) / 2
    removed = prune(root, retain_s=time.time() - horizon, max_bytes=None)
    assert removed == found[:1]
    assert not (root / found[0].path).exists() and (root / found[1].path).exists()
    assert segments(root) == found[1:]
    assert all(json.loads(line)["file"] != Path(found[0].path).name
               for line in _lines(root, "cam1") if line)  # fmt: skip
    assert prune(root, retain_s=0, max_bytes=None) == found[1:]  # all, oldest first
    assert segments(root) == [] and not list((root / "recordings" / "cam1").glob("*.mp4"))


@pytest.mark.slow
def test_prune_by_size_removes_the_oldest_first_and_spares_what_keep_keeps(recorded, tmp_path):
    root, found = _copy(recorded, tmp_path)
    total = sum(s.bytes for s in found)
    assert prune(root, retain_s=None, max_bytes=total) == []
    assert prune(root, retain_s=None, max_bytes=total - 1) == found[:1]
    root, found = _copy(recorded, tmp_path / "again")
    kept = found[0]
    removed = prune(root, retain_s=None, max_bytes=total - 1, keep=lambda s: s == kept)
    assert removed == found[1:2] and segments(root) == [kept, *found[2:]]
    with pytest.raises(ConfigError, match="retain_s"):
        prune(root, retain_s=-1, max_bytes=None)


@pytest.mark.slow
async def test_prune_never_removes_the_segment_being_written(rtsp_server, tmp_path, probe):
    source = open_source(rtsp_server.url("cam2"), "cam2", options=FAST)
    recorder = Recorder(tmp_path, "cam2", segment_s=1)
    async with Running(source, capacity=64, runner=_Tapped(recorder)) as run:
        await run.until(lambda: recorder.state.files >= 3, 20, "three segments")
        before = segments(tmp_path)
        assert [s.writing for s in before] == [False] * (len(before) - 1) + [True]
        removed = prune(tmp_path, retain_s=0, max_bytes=0)
        assert removed == before[:-1]
        (writing,) = segments(tmp_path)
        assert writing.path == before[-1].path and writing.writing and writing.end_wall is None
    # The writer was not disturbed: it finished the file and its catalogue lines.
    after = segments(tmp_path)
    assert after[0].path == writing.path and after[0].complete and not after[0].writing
    assert int(probe(tmp_path / after[0].path)["streams"][0]["nb_read_frames"]) == after[0].frames


@pytest.mark.slow
async def test_a_server_restart_starts_a_new_segment_and_the_catalogue_says_so(
    own_rtsp_server, tmp_path, probe
):
    source = open_source(own_rtsp_server.url("cam"), "cam", options=FAST)
    recorder = Recorder(tmp_path, "cam", segment_s=60)
    async with Running(source, capacity=64, runner=_Tapped(recorder)) as run:
        await run.until(lambda: len(run.frames) >= 60, 20, "60 frames")
        own_rtsp_server.kill()
        await run.until(lambda: source.status.state == "offline", 15, "offline")
        own_rtsp_server.start()
        await run.until(lambda: recorder.state.files >= 2, 20, "a segment after the restart")
        since = len(run.frames)
        await run.until(lambda: len(run.frames) >= since + 30, 10, "30 frames more")
    first, second = segments(tmp_path)
    assert (first.reason, second.reason) == ("start", "reconnect")
    assert first.complete and second.complete and second.start_wall > first.end_wall
    for segment in (first, second):
        assert _first_frame(probe, tmp_path / segment.path)["key_frame"] == 1
        assert int(probe(tmp_path / segment.path)["streams"][0]["nb_read_frames"]) >= 20


_RECORD_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, resource, signal, sys, time
    from streamer.archive.recordings import Recorder
    from streamer.core.channel import Channel, DropPolicy
    from streamer.sources import SourceOptions, open_source

    url, root, seconds, limit = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    if limit:  # a disk that fills: writes past `limit` bytes fail (EFBIG) instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    async def main():
        source = open_source(url, "cam", options=SourceOptions(open_timeout=5, read_timeout=5))
        recorder = Recorder(root, "cam", segment_s=60)
        frames, stop = Channel(8, DropPolicy.DROP_OLDEST), asyncio.Event()
        running = asyncio.ensure_future(source.run(frames, stop, tap=recorder))
        async def drain():
            async for _ in frames:
                pass
        draining = asyncio.ensure_future(drain())
        await asyncio.sleep(seconds)
        state = recorder.state  # while running: the stream goes on after a write error
        print(json.dumps({"state": state.state, "detail": state.detail,
                          "frames": source.status.frames, "online": source.status.state}),
              flush=True)
        stop.set()
        await running
        await draining

    asyncio.run(main())
    """
)


def _recording_process(url: str, root: Path, seconds: float, limit: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _RECORD_SCRIPT, url, str(root), str(seconds), str(limit)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
async def test_kill_9_leaves_the_segment_playable_and_the_catalogue_readable(
    rtsp_server, tmp_path, probe
):
    process = _recording_process(rtsp_server.url("cam1"), tmp_path, seconds=60)
    folder = tmp_path / "recordings" / "cam"
    try:
        # A few fragments in (one a second): then it dies mid-segment, mid-fragment.
        await wait_until(lambda: any(f.stat().st_size > 300_000 for f in folder.glob("*.mp4")),
                         30, "300 kB recorded")  # fmt: skip
        await asyncio.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        process.stdout.close()
    (cut,) = segments(tmp_path)
    assert not cut.writing and not cut.complete and cut.end_wall is None  # cut short
    info = probe(tmp_path / cut.path)
    played = int(info["streams"][0]["nb_read_frames"])
    assert played >= 35 and _first_frame(probe, tmp_path / cut.path)["key_frame"] == 1
    # A torn last line (the crash in the middle of an append) is skipped on reading.
    with (folder / "segments.jsonl").open("ab") as catalogue:
        catalogue.write(b'{"event":"close","fi')
    assert segments(tmp_path) == [cut]
    hit = locate(tmp_path, "cam", cut.start_wall + 1.0)  # held up to its last write
    assert hit is not None and hit[1] == pytest.approx(1.0)
    # The next recorder of the stream closes it in the catalogue, with what plays of it.
    Recorder(tmp_path, "cam").sink().close()
    (repaired,) = segments(tmp_path)
    assert not repaired.complete and abs(repaired.frames - played) <= 1  # a torn last packet
    assert repaired.end_wall == pytest.approx(repaired.start_wall + repaired.frames / 25, abs=0.05)
    lines = _lines(tmp_path, "cam")
    assert lines[-1] == b"" and b'{"event":"close","fi' in lines  # the torn line ended
    assert sum(1 for line in lines if line.startswith(b'{"event":"close","file"')) == 1


@pytest.mark.slow
def test_a_full_disk_stops_the_recording_and_says_so_while_the_stream_goes_on(
    rtsp_server, tmp_path, probe
):
    process = _recording_process(rtsp_server.url("cam2"), tmp_path, seconds=5, limit=150_000)
    out, _ = process.communicate(timeout=60)
    report = json.loads(out.splitlines()[-1])
    assert report["state"] == "failed" and report["online"] == "online"
    assert "the disk is full" in report["detail"] and "retrying in 30 s" in report["detail"]
    assert report["frames"] >= 5 * 25 * 0.7  # decoding went on at the stream's rate
    (segment,) = segments(tmp_path)
    assert not segment.complete and segment.bytes <= 150_000
    assert int(probe(tmp_path / segment.path)["streams"][0]["nb_read_frames"]) >= 10


def test_a_stream_has_one_recorder_at_a_time_and_bad_settings_are_refused(tmp_path):
    first = Recorder(tmp_path, "door").sink()
    try:
        second = Recorder(tmp_path, "door")
        second.sink().close()
        assert second.state.state == "failed"
        assert "another process records it" in (second.state.detail or "")
    finally:
        first.close()
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(ConfigError, match="segment_s"):
            Recorder(tmp_path, "door", segment_s=bad)
    for name in ("..", "a/b", ""):
        with pytest.raises(ConfigError, match="cannot name a recordings folder"):
            Recorder(tmp_path, name)
