"""Clips (`streamer.archive.clips`): cut from a real file by stream copy at a key frame or by
encoding again, and joined across real recorded segments of an RTSP stream; checked with
ffprobe, down to the packets' bytes."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from live_helpers import FAST, Running

from streamer.archive.clips import clip_from_recordings, cut_clip
from streamer.archive.recordings import Recorder, segments
from streamer.errors import ConfigError, SourceNotFoundError, SourceOpenError
from streamer.sources import SourceRunner, open_source
from streamer.sources.options import DecodePlan

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory, sample_clip) -> Path:
    """The sample clip (H.264 + AAC, 5.28 s at 25 fps) with a key frame every second."""
    out = tmp_path_factory.mktemp("clips") / "gop25.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(sample_clip), "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "25", "-c:a", "copy", str(out)],
                   check=True)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def ts_clip(gop_clip, tmp_path_factory) -> Path:
    """The same as MPEG-TS: no index to seek with, AAC in ADTS frames, time from 1.4 s."""
    out = tmp_path_factory.mktemp("clips") / "gop25.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(gop_clip), "-c", "copy", str(out)],
                   check=True)  # fmt: skip
    return out


class _Tapped:
    def __init__(self, tap: Recorder) -> None:
        self.tap = tap

    def run(self, source, out, stop):
        return SourceRunner(DecodePlan()).run(source, out, stop, self.tap)


async def _record(url: str, root: Path) -> None:
    source = open_source(url, "cam", options=FAST)
    recorder = Recorder(root, "cam", segment_s=2)
    async with Running(source, capacity=64, runner=_Tapped(recorder)) as run:
        await run.until(lambda: recorder.state.files >= 3, 20, "a third segment")


@pytest.fixture(scope="module")
def recorded(rtsp_server, tmp_path_factory) -> Path:
    """An archive with 2 full 2 s segments of the RTSP pattern (a key frame every second),
    and the start of a third: the tests that use it are `slow`."""
    root = tmp_path_factory.mktemp("archive")
    asyncio.run(_record(rtsp_server.url("cam2"), root))
    return root


def _packets(path: Path, stream: str = "v") -> list[dict]:
    """ffprobe's packets of one stream, with an MD5 of each one's bytes."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", stream, "-show_packets",
         "-show_data_hash", "MD5", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)["packets"]


def _hashes(path: Path, start: float = 0.0, end: float = float("inf")) -> list[str]:
    return [p["data_hash"] for p in _packets(path) if start <= float(p["pts_time"]) < end]


def _video(probe, path: Path) -> dict:
    return next(s for s in probe(path)["streams"] if s["codec_type"] == "video")


def test_a_span_from_a_key_frame_is_copied_packet_for_packet(gop_clip, tmp_path, probe):
    result = cut_clip(gop_clip, 1.3, 3.0, tmp_path / "clip.mp4")
    assert result.copied and result.requested == (1.3, 3.0)
    assert result.start == 1.0 and result.end == pytest.approx(3.0)  # from the key frame at 1 s
    info = probe(result.path)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    video = _video(probe, result.path)
    assert int(video["nb_read_frames"]) == 50
    assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.05)
    # Stream copy: the very bytes of the source's packets from 1 s to 3 s.
    assert _hashes(result.path) == _hashes(gop_clip, 1.0, 3.0)
    assert _packets(result.path)[0]["flags"].startswith("K")


def test_a_span_starting_at_a_key_frame_starts_exactly_there(gop_clip, tmp_path):
    result = cut_clip(gop_clip, 2.0, 2.5, tmp_path / "clip.mp4")
    assert result.copied and (result.start, result.end) == (2.0, pytest.approx(2.52, abs=0.01))
    assert _hashes(result.path) == _hashes(gop_clip, 2.0, 2.52)


def test_a_span_with_no_key_frame_near_enough_is_encoded_again(sample_clip, tmp_path, probe):
    # The sample clip has one key frame, at 0: 3 s before the span.
    result = cut_clip(sample_clip, 3.0, 4.5, tmp_path / "clip.mp4", max_lead_s=2.0)
    assert not result.copied
    assert result.start == pytest.approx(3.0) and result.end == pytest.approx(4.52)
    video = _video(probe, result.path)
    assert video["codec_name"] == "h264" and int(video["nb_read_frames"]) == 38  # 3.00..4.48
    assert float(probe(result.path)["format"]["duration"]) == pytest.approx(1.52, abs=0.05)
    assert _packets(result.path)[0]["flags"].startswith("K")
    assert not set(_hashes(result.path)) & set(_hashes(sample_clip))  # new packets
    # With the default lead (4 s) the key frame at 0 fits: copied, and it says from where.
    copied = cut_clip(sample_clip, 3.0, 4.5, tmp_path / "copied.mp4")
    assert copied.copied and copied.start == 0.0 and copied.end == pytest.approx(4.5, abs=0.05)


def test_an_mpeg_ts_file_is_cut_by_copy_and_by_encoding_with_its_audio(ts_clip, tmp_path, probe):
    first = float(probe(ts_clip)["format"]["start_time"])  # its timeline starts there
    start, end = first + 1.3, first + 3.0
    copied = cut_clip(ts_clip, start, end, tmp_path / "copied.mp4")
    assert copied.copied and copied.start == pytest.approx(first + 1.0, abs=0.001)
    # (Not byte for byte: MP4 frames H.264 by lengths where MPEG-TS uses start codes.)
    assert _packets(copied.path)[0]["flags"].startswith("K")
    encoded = cut_clip(ts_clip, start, end, tmp_path / "encoded.mp4", max_lead_s=0.1)
    assert not encoded.copied and start <= encoded.start < start + 0.04  # its first frame
    assert encoded.end == pytest.approx(end, abs=0.04)
    for result in (copied, encoded):
        frames = round((result.end - result.start) * 25)
        streams = {s["codec_name"]: s for s in probe(result.path)["streams"]}
        assert int(streams["h264"]["nb_read_frames"]) == frames
        assert float(streams["aac"]["duration"]) == pytest.approx(frames / 25, abs=0.1)
        assert int(streams["aac"]["nb_read_frames"]) >= frames / 25 * 44  # 46.9 a second


def test_a_clip_ends_where_the_media_does(gop_clip, tmp_path, probe):
    result = cut_clip(gop_clip, 4.2, 60.0, tmp_path / "clip.mp4")
    assert result.copied and result.start == 4.0 and result.end == pytest.approx(5.28)
    assert int(_video(probe, result.path)["nb_read_frames"]) == 32


@pytest.mark.slow
def test_a_clip_across_two_segments_is_joined_by_copy_with_continuous_timestamps(recorded):
    first, second = segments(recorded)[:2]
    start, end = first.start_wall + 1.5, second.start_wall + 1.0
    result = clip_from_recordings(recorded, "cam", start, end, recorded / "join.mp4")
    assert result.copied and result.requested == (start, end)
    assert result.start == pytest.approx(first.start_wall + 1.0)  # the key frame at 1 s
    assert result.end == pytest.approx(end, abs=0.05)
    packets = _packets(result.path)
    assert len(packets) == 50
    steps = {round(float(b["dts_time"]) - float(a["dts_time"]), 3)
             for a, b in itertools.pairwise(packets)}  # fmt: skip
    assert steps == {0.04}  # one frame after the other across the join: no gap, no overlap
    expected = _hashes(recorded / first.path, 1.0) + _hashes(recorded / second.path, 0.0, 1.0)
    assert [p["data_hash"] for p in packets] == expected


@pytest.mark.slow
def test_a_clip_across_segments_is_encoded_when_no_key_frame_fits(recorded, probe):
    first, second = segments(recorded)[:2]
    start, end = first.start_wall + 1.5, second.start_wall + 1.0
    result = clip_from_recordings(recorded, "cam", start, end, recorded / "enc.mp4",
                                  max_lead_s=0.1)  # fmt: skip
    assert not result.copied
    assert result.start == pytest.approx(start, abs=0.04)
    assert result.end == pytest.approx(end, abs=0.05)
    frames = int(_video(probe, result.path)["nb_read_frames"])
    assert 36 <= frames <= 38


@pytest.mark.slow
def test_a_recording_cut_short_still_gives_a_clip(recorded, tmp_path, probe):
    segment = segments(recorded)[0]
    torn = tmp_path / "torn.mp4"
    data = (recorded / segment.path).read_bytes()
    torn.write_bytes(data[: len(data) * 3 // 5])  # as a crash leaves it: a fragment torn
    result = cut_clip(torn, 0.5, 10.0, tmp_path / "clip.mp4")
    assert result.copied and result.start == 0.0
    assert 0.5 < result.end < segment.duration
    assert int(_video(probe, result.path)["nb_read_frames"]) == round(result.end * 25)


def test_bad_spans_and_inputs_are_clear_errors(gop_clip, tmp_path):
    out = tmp_path / "clip.mp4"
    with pytest.raises(SourceNotFoundError, match="no such file"):
        cut_clip(tmp_path / "missing.mp4", 0, 1, out)
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(SourceOpenError, match="not a readable video"):
        cut_clip(tmp_path / "notes.mp4", 0, 1, out)
    for start, end in ((2.0, 2.0), (3.0, 1.0), (float("nan"), 1.0)):
        with pytest.raises(ConfigError, match="must"):
            cut_clip(gop_clip, start, end, out)
    with pytest.raises(ConfigError, match="outside the media"):
        cut_clip(gop_clip, 10.0, 12.0, out)
    assert not out.exists()


@pytest.mark.slow
def test_spans_outside_the_recordings_and_missing_segments_are_clear_errors(recorded, tmp_path):
    out = tmp_path / "clip.mp4"
    first = segments(recorded)[0]
    with pytest.raises(ConfigError, match=r"no recording of stream 'cam' holds .* \(recorded from"):
        clip_from_recordings(recorded, "cam", first.start_wall - 60, first.start_wall - 30, out)
    with pytest.raises(ConfigError, match="it has no recordings"):
        clip_from_recordings(recorded, "porch", first.start_wall, first.start_wall + 1, out)
    broken = tmp_path / "broken"
    shutil.copytree(recorded, broken)
    (broken / first.path).unlink()
    with pytest.raises(SourceNotFoundError, match="in the catalogue is missing"):
        clip_from_recordings(broken, "cam", first.start_wall, first.start_wall + 1, out)
