"""Local cameras through OpenCV (`cv2.VideoCapture`): a device index or a device path.

Cameras have no media time, so a frame's pts is the wall time since the source's first frame,
in milliseconds. A camera that stops delivering (unplugged, taken by another program, a driver
hiccup) is reopened with backoff like a network source.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import cv2
import numpy as np

from streamer.errors import SourceOpenError, SourceUnavailableError
from streamer.sources._live import LiveSource
from streamer.sources.info import VideoInfo
from streamer.sources.names import camera_stream_name
from streamer.sources.options import SourceOptions

__all__ = ["CameraSource"]

_TIME_BASE = Fraction(1, 1000)
_V4L_MAJOR = 81  # Linux's device number of video4linux devices (/dev/video*)


class CameraSource(LiveSource):
    """A local camera read with OpenCV in a thread, converted BGR → RGB.

    Args:
        device: camera index (0 is the first camera) or device path (`/dev/video0`).
        name: stream name; defaults to `cam0` for camera 0.
        live: the live contract (the default); False delivers every frame it reads, waiting
            for the pipeline (`--no-drop`).
        options: read timeout and reconnect backoff (`open_timeout` is not used: OpenCV's
            backends open a local device without one).
        capture_factory: makes the capture from `device`; defaults to `cv2.VideoCapture`.
            Pass e.g. `lambda d: cv2.VideoCapture(d, cv2.CAP_V4L2)` to pick a backend.

    A camera has no packets to copy (`tappable` is False): `run(..., tap=)` takes a tap whose
    sink encodes frames (`streamer.sources.tap.FrameSink`, as an archive's `Recorder` does)
    and hands it every frame on the decode thread.

    Example:
        >>> CameraSource(0).name
        'cam0'
    """

    def __init__(
        self,
        device: int | str,
        name: str | None = None,
        *,
        live: bool = True,
        options: SourceOptions = SourceOptions(),  # noqa: B008 (frozen, so sharing is safe)
        capture_factory: Callable[[int | str], Any] = cv2.VideoCapture,
    ) -> None:
        spec = f"camera {device}" if isinstance(device, int) else str(device)
        super().__init__(spec, name or camera_stream_name(device), options, live=live)
        self.device = device
        self._capture_factory = capture_factory
        self._t0: float | None = None  # monotonic time of the first frame: pts 0
        self._last = -1  # the last pts given

    def _open_reader(self, resume_after: int | None) -> _CameraReader:
        if isinstance(self.device, str):
            _check_device(self.device)
        return _CameraReader(self._capture_factory(self.device), self.spec, self._clock)

    def _clock(self) -> int:
        """Milliseconds since the source's first frame, always after the last frame's: two
        frames read within a millisecond (a driver handing over what it buffered while the
        reader was held up) must not share a pts, which a muxer refuses."""
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        self._last = max(round((now - self._t0) * 1000), self._last + 1)
        return self._last


def _check_device(path: str) -> None:
    """Refuse a path under /dev that exists but is no camera (`/dev/null`, a disk), which
    OpenCV would only report as "cannot be opened"."""
    try:
        info = os.stat(path)
    except OSError:
        return  # not there (yet): the capture's own message says what to check
    if sys.platform.startswith("linux") and not (
        stat.S_ISCHR(info.st_mode) and os.major(info.st_rdev) == _V4L_MAJOR
    ):
        raise SourceOpenError(
            f"{path}: not a camera (a camera is a video4linux device, `ls /dev/video*`); a "
            "video file or stream goes by its own path or URL"
        )


class _CameraReader:
    """One open capture (used from its decode thread only)."""

    finite = False  # a camera never ends: no frame means it went away
    damaged = 0  # OpenCV says nothing of damaged pictures
    tap = None  # no packets to copy: a recorder gets its frames (`FrameSink`)

    def __init__(self, capture: Any, spec: str, clock: Callable[[], int]) -> None:
        self.capture = capture
        self.spec = spec
        self._clock = clock
        if not capture.isOpened():
            capture.release()
            index = spec.removeprefix("camera ")  # `streamer run 3` with a file named 3 here
            here = index.isdigit() and os.path.isfile(index)
            file = f" (a file named {index!r} is here: give it as ./{index})" if here else ""
            raise SourceOpenError(
                f"{spec}: the camera cannot be opened. Fix: check the index or path "
                "(`ls /dev/video*`), that no other program holds it, and the permissions "
                f"(the `video` group).{file}"
            )
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise SourceUnavailableError(f"{spec}: the camera opened but sends no frames")
        self._first: np.ndarray | None = first
        self.info = self._describe(first)

    def _describe(self, image: np.ndarray) -> VideoInfo:
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(
            width=image.shape[1],
            height=image.shape[0],
            fps=Fraction(fps).limit_denominator(1001) if fps and fps > 0 else None,
            time_base=_TIME_BASE,
            frames=None,
            duration=None,
            start=0.0,
            codec="camera",
            audio=None,
        )

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """RGB frames stamped with the wall clock; raises when the camera stops sending."""
        if self._first is not None:
            first, self._first = self._first, None
            yield to_rgb(first), self._clock()
        while True:
            ok, image = self.capture.read()
            if not ok or image is None:
                raise SourceUnavailableError(
                    f"{self.spec}: the camera stopped sending frames (unplugged or busy?)"
                )
            yield to_rgb(image), self._clock()

    def close(self) -> None:
        self.capture.release()


def to_rgb(image: np.ndarray) -> np.ndarray:
    """An OpenCV capture image (BGR, BGRA or grey) as H×W×3 uint8 RGB."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
