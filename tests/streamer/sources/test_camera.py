"""The camera path: OpenCV captures, through a paced capture over a real clip that behaves like
a camera (frames at the clip's rate, forever; told to fail, it stops like an unplugged one)."""

from __future__ import annotations

import itertools
import logging
import sys
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from live_helpers import FAST, Running

from streamer.errors import SourceOpenError
from streamer.sources import CameraSource, open_source

pytestmark = pytest.mark.timeout(60)


class PacedCapture:
    """`cv2.VideoCapture` over a clip, paced like a camera: each `read()` waits for the next
    frame time at the clip's rate; the clip loops. After `fail_after` good reads every read
    fails, as when a camera is unplugged."""

    def __init__(self, path: str, fail_after: int | None = None) -> None:
        self.capture = cv2.VideoCapture(path)
        self.fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fail_after = fail_after
        self.reads = 0
        self._next = time.monotonic()

    def isOpened(self) -> bool:  # OpenCV's name
        return self.capture.isOpened()

    def get(self, prop: int) -> float:
        return self.capture.get(prop)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.fail_after is not None and self.reads >= self.fail_after:
            return False, None
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1 / self.fps, time.monotonic() - 1 / self.fps)
        ok, image = self.capture.read()
        if not ok:  # end of clip: loop, as a camera never ends
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.capture.read()
        self.reads += 1
        return ok, image

    def release(self) -> None:
        self.capture.release()


class PacedCameras:
    """A `capture_factory`: the n-th open gets `fail_after[n]` (None: never fails)."""

    def __init__(self, clip, fail_after: list[int | None] | None = None) -> None:
        self.clip = str(clip)
        self.fail_after = fail_after or []
        self.devices: list[object] = []

    def __call__(self, device: object) -> PacedCapture:
        n = len(self.devices)
        self.devices.append(device)
        return PacedCapture(self.clip, self.fail_after[n] if n < len(self.fail_after) else None)


class BurstCapture:
    """A capture that hands over frames as fast as they are read, as a driver does with what
    it buffered while the reader was held up: many within one millisecond."""

    def __init__(self, device: object) -> None:
        self.image = np.zeros((48, 64, 3), np.uint8)

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def get(self, prop: int) -> float:
        return 25.0

    def read(self) -> tuple[bool, np.ndarray]:
        return True, self.image

    def release(self) -> None:
        pass


async def test_frames_read_in_a_burst_still_get_increasing_pts():
    source = CameraSource(0, options=FAST, capture_factory=BurstCapture)
    async with Running(source) as run:
        await run.until(lambda: len(run.frames) >= 200, 10, "200 frames")
    pts = [f.pts for f in run.frames]
    assert all(b > a for a, b in itertools.pairwise(pts)), pts[:40]


async def test_camera_frames_arrive_at_the_camera_rate_in_rgb(small_clip):
    cameras = PacedCameras(small_clip)
    source = CameraSource(0, options=FAST, capture_factory=cameras)
    async with Running(source) as run:
        took = await run.until(lambda: len(run.frames) >= 25, 10, "25 frames")
    assert cameras.devices == [0] and source.name == "cam0"
    assert took > 0.5  # paced at 25 fps: 25 frames take about a second, not a burst
    frames = run.frames
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))
    assert frames[0].pts == pytest.approx(0, abs=0.05) and frames[0].time_base == Fraction(1, 1000)
    rate = (len(frames) - 1) / (frames[-1].pts - frames[0].pts)
    # About 25 (the clip's rate); a burst would be hundreds. No lower bound: a loaded machine
    # can only make a paced camera slower.
    assert rate < 40, rate
    # BGR → RGB: the same picture as PyAV's RGB decode of the clip's first frame.
    with av.open(str(small_clip)) as container:
        expected = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    got = frames[0].image
    assert got.shape == (180, 320, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected).mean() < 2
    assert np.abs(got[..., ::-1].astype(int) - expected).mean() > 10  # channels not swapped
    assert source.status.state == "online"
    assert (source.info.width, source.info.height, float(source.info.fps)) == (320, 180, 25.0)


async def test_camera_that_stops_sending_is_reopened(small_clip, caplog):
    cameras = PacedCameras(small_clip, fail_after=[10, 5])
    source = CameraSource("/dev/video3", options=FAST, capture_factory=cameras)
    async with Running(source) as run:
        await run.until(lambda: len(run.frames) >= 25, 15, "25 frames over three opens")
    assert source.name == "cam3" and cameras.devices == ["/dev/video3"] * 3
    assert source.status.reconnects == 2 and source.status.state == "online"
    assert "the camera stopped sending frames" in source.status.last_error
    frames = run.frames
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("reconnect attempt" in w for w in warnings)


class _Closed:
    def isOpened(self) -> bool:
        return False

    def release(self) -> None:
        pass


async def test_a_camera_that_never_opens_fails_naming_the_fix():
    source = CameraSource(7, options=FAST, capture_factory=lambda device: _Closed())
    async with Running(source) as run:
        await run.ended(5)
    assert source.status.state == "failed"
    assert isinstance(source.error, SourceOpenError)
    assert "camera 7: the camera cannot be opened. Fix:" in source.status.last_error
    assert "a file named" not in source.status.last_error


async def test_a_camera_index_that_is_also_a_file_here_names_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "3").write_bytes(b"")  # `streamer run 3` meant the video file named 3
    source = CameraSource(3, options=FAST, capture_factory=lambda device: _Closed())
    async with Running(source) as run:
        await run.ended(5)
    assert "(a file named '3' is here: give it as ./3)" in source.status.last_error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="video4linux is Linux's")
async def test_a_device_path_that_is_no_camera_is_named_so_without_opening_it():
    opened: list[object] = []
    source = CameraSource(
        "/dev/null", options=FAST, capture_factory=lambda device: opened.append(device) or _Closed()
    )
    async with Running(source) as run:
        await run.ended(5)
    assert source.status.state == "failed" and opened == []
    assert "/dev/null: not a camera (a camera is a video4linux device" in source.status.last_error


def test_open_source_gives_cameras_for_indexes_and_device_paths():
    assert isinstance(open_source("0"), CameraSource)
    assert open_source("0").name == "cam0" and open_source("0").device == 0
    assert open_source("/dev/video2").name == "cam2"
    assert open_source("/dev/v4l/by-id/usb-Cam_1-video-index0").name == "usb-Cam_1-video-index0"
    assert open_source("1", name="door").name == "door"
