"""Choose which frames are analysed: a fixed rate in media time.

Sampling on media time (not arrival order or wall time) makes file runs repeatable: the same
file gives the same analysed frames at any processing speed.
"""

from __future__ import annotations

from streamer.errors import ConfigError


class Sampler:
    """Picks frames at `fps` analysed frames per media second, per stream.

    Args:
        fps: analysed frames per second of media; None analyses every frame.

    The first frame is always taken; after that a frame is taken when its time reaches the
    next point of a grid anchored at the first frame, so a jittery frame rate does not drift.
    """

    def __init__(self, fps: float | None) -> None:
        if fps is not None and not fps > 0:
            raise ConfigError(f"analyze fps must be > 0 or None (every frame), got {fps}")
        self.fps = fps
        self._rates: dict[str, float | None] = {}  # streams with a rate of their own
        self._next: dict[str, float] = {}
        self._origin: dict[str, float] = {}

    def rate(self, stream: str) -> float | None:
        """The rate `stream` is sampled at (its own, else the sampler's)."""
        return self._rates.get(stream, self.fps)

    def set_rate(self, stream: str, fps: float | None) -> None:
        """Sample `stream` at `fps` from its next frame on (a running stream's rate changed);
        its grid restarts there, so the first frame at the new rate is taken at once."""
        if fps is not None and not fps > 0:
            raise ConfigError(f"analyze fps must be > 0 or None (every frame), got {fps}")
        self._next.pop(stream, None)
        self._origin.pop(stream, None)
        self._rates[stream] = fps

    def forget(self, stream: str) -> None:
        """Drop what is kept of `stream`, its own rate too (it was removed)."""
        for kept in (self._rates, self._next, self._origin):
            kept.pop(stream, None)

    def take(self, stream: str, pts: float) -> bool:
        """Whether the frame of `stream` at media time `pts` (seconds) is analysed."""
        fps = self._rates.get(stream, self.fps)
        if fps is None:
            return True
        due = self._next.get(stream)
        if due is not None and pts < due - 1e-6:
            return False
        origin = self._origin.setdefault(stream, pts)
        # Next grid point strictly after this frame: skips ahead after a gap instead of bursting.
        step = 1.0 / fps
        self._next[stream] = origin + (int((pts - origin) * fps + 1e-6) + 1) * step
        return True
