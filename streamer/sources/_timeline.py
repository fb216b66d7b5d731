"""A live source's frame numbers and timestamps across its connections (`Timeline`)."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from streamer.core.frame import Frame
from streamer.sources.info import VideoInfo

__all__ = ["Pacer", "Timeline"]


class Timeline:
    """Frame numbers and timestamps across connections.

    Indexes keep counting over reconnects. A live stream's timestamps restart (near 0, or at a
    random RTP offset) on every connection; rebasing continues them from the last frame plus
    the wall time the source was away, so they never go backwards and a recording shows the
    outage as a gap. A non-live source resumes instead: frames up to the last delivered one are
    skipped.
    """

    def __init__(self) -> None:
        self.index = 0
        self.last_raw: int | None = None  # this connection's raw pts of the last frame
        self._last_pts: float | None = None
        self._last_captured = 0.0
        self._time_base = Fraction(1, 1000)
        self._step = 1
        self._offset: int | None = 0
        self._resume_after: int | None = None
        self._conn_raw: int | None = None

    def new_connection(self, info: VideoInfo, *, rebase: bool) -> None:
        self._time_base = info.time_base
        fps = info.fps or Fraction(25)
        self._step = max(1, round(1 / (fps * info.time_base)))
        self._conn_raw = None
        # None: work the offset out from the first frame of this connection.
        self._offset = None if rebase and self._last_pts is not None else 0
        self._resume_after = None if rebase else self.last_raw

    def stamp(self, stream: str, image: np.ndarray, raw: int | None) -> Frame | None:
        """The next Frame, or None for a frame already delivered before a reconnect."""
        if raw is None:  # some packets carry no pts: count on from the last one
            raw = 0 if self._conn_raw is None else self._conn_raw + self._step
        self._conn_raw = raw
        if self._resume_after is not None and raw <= self._resume_after:
            return None
        captured = time.monotonic()
        if self._offset is None:
            assert self._last_pts is not None
            away = max(captured - self._last_captured, float(self._step * self._time_base))
            self._offset = round((self._last_pts + away) / self._time_base) - raw
        pts_raw = raw + self._offset
        frame = Frame(
            stream=stream,
            index=self.index,
            pts=float(pts_raw * self._time_base),
            captured=captured,
            image=image,
            pts_raw=pts_raw,
            time_base=self._time_base,
        )
        self.index += 1
        self.last_raw = raw
        self._last_pts = frame.pts
        self._last_captured = captured
        return frame


class Pacer:
    """Holds frames back until their own time comes, so a source that hands them over faster
    than they play (a server at network speed, an HLS segment at once) plays at its frame rate.

    Args:
        most: the longest wait for one frame, in seconds; a larger jump in the timestamps is
            not waited out (the clock starts again from that frame).
    """

    def __init__(self, most: float = 1.0) -> None:
        self.most = most
        self._clock: tuple[float, float] | None = None  # (monotonic, media time)

    def wait(self, media_time: float) -> None:
        """Sleep until the frame at `media_time` is due."""
        now = time.monotonic()
        if self._clock is None:
            self._clock = (now, media_time)
        wait = self._clock[0] + media_time - self._clock[1] - now
        if wait > self.most:  # a jump: go on from here
            self._clock, wait = (now, media_time), 0.0
        if wait > 0:
            time.sleep(wait)
