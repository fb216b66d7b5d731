"""Recordings by encoding (`streamer.archive._encode`): a live input whose packets cannot be
copied (an MJPEG camera over HTTP) or that has none (a local camera: OpenCV gives pictures)
is recorded by encoding its decoded frames into the same segments and catalogue as copied
packets. A real MJPEG-over-HTTP server, a camera paced over a real clip, the real recorder,
checked with ffprobe; a whole `--archive` run of an MJPEG camera at the end."""

from __future__ import annotations

import asyncio
import itertools
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from live_helpers import FAST, MjpegServer, Running, wait_until
from media import ffprobe, video_stream

from streamer import RunConfig, run_pipeline
from streamer.archive import Archive, EncoderSpec
from streamer.archive.embedder import Embedder
from streamer.archive.options import ArchiveConfig
from streamer.archive.recordings import Recorder, locate, segments
from streamer.core.frame import Frame
from streamer.sources import CameraSource, SourceRunner, VideoInfo, open_source
from streamer.sources.options import DecodePlan
from streamer.sources.pool import decoding

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class _Tapped:
    """Runs a source with `tap`, converting only the frames the plan asks for (as a run that
    draws nothing does: the recorder converts the rest on its own thread)."""

    def __init__(self, tap: Recorder) -> None:
        self.tap = tap

    def run(self, source, out, stop):
        return SourceRunner(DecodePlan(full_frames=False)).run(source, out, stop, self.tap)


class _PacedCapture:
    """`cv2.VideoCapture` over a clip, each `read()` at the clip's rate, looping: a camera
    that OpenCV reads (as in tests/streamer/sources/test_camera.py)."""

    def __init__(self, path: Path) -> None:
        self.capture = cv2.VideoCapture(str(path))
        self.fps = self.capture.get(cv2.CAP_PROP_FPS)
        self._next = time.monotonic()

    def isOpened(self) -> bool:  # OpenCV's name
        return self.capture.isOpened()

    def get(self, prop: int) -> float:
        return self.capture.get(prop)

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(max(0.0, self._next - time.monotonic()))
        self._next = max(self._next + 1 / self.fps, time.monotonic() - 1 / self.fps)
        ok, image = self.capture.read()
        if not ok:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.capture.read()
        return ok, image

    def release(self) -> None:
        self.capture.release()


def _jpegs(clip: Path, count: int = 10) -> list[bytes]:
    with av.open(str(clip)) as container:
        frames = itertools.islice(container.decode(video=0), count)
        return [cv2.imencode(".jpg", f.to_ndarray(format="bgr24"))[1].tobytes() for f in frames]


@pytest.fixture
def steady_mjpeg(small_clip):
    """An HTTP MJPEG camera at 25 fps that keeps its connection."""
    server = MjpegServer(_jpegs(small_clip), per_connection=10**9)
    yield server
    server.close()


async def _record(source, root: Path, seconds: float, segment_s: float) -> tuple[Recorder, list]:
    recorder = Recorder(root, source.name, segment_s=segment_s)
    async with Running(source, capacity=512, runner=_Tapped(recorder)) as run:
        await run.until(lambda: len(run.frames) >= 1, 20, "a first frame")
        await asyncio.sleep(seconds)
        assert recorder.state.state == "recording" and recorder.state.mode == "encode"
    return recorder, run.frames


def _check_plays_from_a_key_frame(path: Path, frames: int) -> None:
    info = ffprobe(path, "-show_frames", "-select_streams", "v")
    video = video_stream(info)
    assert video["codec_name"] == "h264" and int(video["nb_read_frames"]) == frames
    first = info["frames"][0]
    assert first["key_frame"] == 1 and float(first["pts_time"]) == 0.0  # at the segment's 0
    keys = [float(f["pts_time"]) for f in info["frames"] if f["key_frame"] == 1]
    assert all(b - a <= 2.05 for a, b in itertools.pairwise([*keys, float(video["duration"])]))


def _wall(frame: Frame) -> float:
    return time.time() - (time.monotonic() - frame.captured)


@pytest.mark.slow
async def test_an_mjpeg_camera_over_http_is_encoded_into_segments_that_cover_the_run(
    steady_mjpeg, tmp_path
):
    source = open_source(steady_mjpeg.url(), "door", options=FAST)
    recorder, frames = await _record(source, tmp_path, seconds=5.0, segment_s=2.0)
    recorded = segments(tmp_path, "door")
    assert len(recorded) == 3 and [s.reason for s in recorded] == ["start", "time", "time"]
    assert recorder.state.state == "closed" and recorder.state.dropped == 0
    for segment in recorded:
        assert (segment.codec, segment.encoded, segment.audio) == ("h264", "mjpeg", None)
        assert segment.complete and (segment.width, segment.height) == (320, 180)
        _check_plays_from_a_key_frame(tmp_path / segment.path, segment.frames)
    # Every frame the source delivered is in the recording, the segments back to back.
    assert sum(s.frames for s in recorded) == len(frames)
    assert [s.duration for s in recorded[:-1]] == [pytest.approx(2.0, abs=0.05)] * 2
    for before, after in itertools.pairwise(recorded):
        assert after.start_wall == pytest.approx(before.end_wall, abs=0.05)
    first, last = _wall(frames[0]), _wall(frames[-1])
    assert recorded[0].start_wall == pytest.approx(first, abs=0.2)
    assert recorded[-1].end_wall == pytest.approx(last + 0.04, abs=0.2)
    # `locate` finds the middle of the run in the middle segment.
    middle = recorded[1].start_wall + 0.5
    assert locate(tmp_path, "door", middle) == (recorded[1], pytest.approx(0.5))


async def test_each_connection_of_a_flaky_mjpeg_camera_starts_a_segment(mjpeg_server, tmp_path):
    # The fixture's camera drops every connection after 30 frames (1.2 s).
    source = open_source(mjpeg_server.url(), "flaky", options=FAST)
    _, frames = await _record(source, tmp_path, seconds=2.5, segment_s=60.0)
    recorded = segments(tmp_path, "flaky")
    assert len(recorded) >= 2 and recorded[0].reason == "start"
    assert {s.reason for s in recorded[1:]} == {"reconnect"}
    assert all(s.complete and s.frames == 30 for s in recorded[:-1])
    assert sum(s.frames for s in recorded) == len(frames)


async def test_a_camera_is_recorded_by_encoding_its_pictures(small_clip, tmp_path):
    source = CameraSource(
        0, "yard", options=FAST, capture_factory=lambda _: _PacedCapture(small_clip)
    )
    recorder, frames = await _record(source, tmp_path, seconds=2.5, segment_s=1.0)
    recorded = segments(tmp_path, "yard")
    assert len(recorded) >= 2 and all(s.encoded == "camera" for s in recorded)
    assert sum(s.frames for s in recorded) == len(frames) and recorder.state.dropped == 0
    for segment in recorded:
        _check_plays_from_a_key_frame(tmp_path / segment.path, segment.frames)
    # The pictures are the camera's: the first frame of the recording looks like the first read.
    with av.open(str(tmp_path / recorded[0].path)) as container:
        picture = next(container.decode(video=0)).to_ndarray(format="rgb24")
    difference = np.abs(picture.astype(int) - frames[0].image.astype(int)).mean()
    assert difference < 6, difference  # x264 at CRF 20: close, not identical


@pytest.mark.slow
async def test_an_mjpeg_camera_in_a_decode_worker_is_encoded_there(steady_mjpeg, tmp_path):
    source = open_source(steady_mjpeg.url(), "pooled", options=FAST)
    recorder = Recorder(tmp_path, "pooled", segment_s=1.0)
    async with decoding([source], DecodePlan(full_frames=False), workers=1) as runner:
        assert runner.in_worker(source)

        class Pooled:
            def run(self, source, out, stop):
                return runner.run(source, out, stop, recorder)

        async with Running(source, capacity=512, runner=Pooled()) as run:
            await run.until(lambda: recorder.state.files >= 2, 20, "a second segment")
            assert recorder.state.mode == "encode"  # followed from the worker's copy
    assert recorder.state.state == "closed"
    recorded = segments(tmp_path, "pooled")
    assert len(recorded) >= 2 and all(s.complete and s.encoded == "mjpeg" for s in recorded)
    for segment in recorded:  # full-size pictures, though the run converted only some
        assert (segment.width, segment.height) == (320, 180)
        _check_plays_from_a_key_frame(tmp_path / segment.path, segment.frames)


def test_an_encoder_that_falls_behind_drops_frames_and_counts_them_never_waits(tmp_path):
    info = VideoInfo(320, 180, Fraction(25), Fraction(1, 1000), None, None, 0.0, "camera", None)
    image = np.full((180, 320, 3), 90, np.uint8)
    recorder = Recorder(tmp_path, "busy", segment_s=60.0)
    sink = recorder.sink()
    assert sink.start_frames(info)
    started = time.monotonic()
    for index in range(600):  # 24 s of frames handed over at once: far faster than x264 goes
        sink.frame(Frame("busy", index, index / 25, time.monotonic(), image, index * 40,
                         Fraction(1, 1000)))  # fmt: skip
    handed = time.monotonic() - started
    sink.stop()
    sink.close()
    (segment,) = segments(tmp_path, "busy")
    dropped = recorder.state.dropped
    assert dropped > 0 and segment.frames + dropped == 600
    assert handed < 1.0  # the decode thread only queued: it never waited for the encoder
    _check_plays_from_a_key_frame(tmp_path / segment.path, segment.frames)


@pytest.mark.slow
async def test_an_archive_run_records_an_mjpeg_camera_and_its_moments_are_found_in_it(
    steady_mjpeg, tmp_path, tiny_encoder
):
    arch = tmp_path / "arch"
    config = RunConfig(
        input=f"door={steady_mjpeg.url()}",
        archive=ArchiveConfig(str(arch), segment_s=2.0, index_every_s=1.0),
    )
    stop = asyncio.Event()

    async def stop_after_three_segments() -> None:
        await wait_until(lambda: len(segments(arch, "door")) >= 3, 60, "three segments")
        stop.set()

    stopping = asyncio.create_task(stop_after_three_segments())
    await run_pipeline(config, encoder=tiny_encoder, stop=stop)
    await stopping
    recorded = segments(arch, "door")
    assert len(recorded) >= 2 and all(s.encoded == "mjpeg" and s.complete for s in recorded)
    spec = EncoderSpec.of(tiny_encoder)
    with Archive(arch, embedder=Embedder.of(tiny_encoder, spec)) as archive:
        hits = archive.search(image=_frame(steady_mjpeg), k=50)
    assert len(hits) >= 3
    for hit in hits:  # every moment is in the recording, and says where
        found = locate(arch, "door", hit.moment.wall_time)
        assert found is not None, hit.moment.wall_time
        assert hit.media_state == "ok" and hit.media == str(arch / found[0].path)


def _frame(server: MjpegServer) -> np.ndarray:
    picture = cv2.imdecode(np.frombuffer(server.jpegs[0], np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
