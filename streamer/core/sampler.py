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
        self._next: dict[str, float] = {}
        self._origin: dict[str, float] = {}

    def take(self, stream: str, pts: float) -> bool:
        """Whether the frame of `stream` at media time `pts` (seconds) is analysed."""
        if self.fps is None:
            return True
        due = self._next.get(stream)
        if due is not None and pts < due - 1e-6:
            return False
        origin = self._origin.setdefault(stream, pts)
        # Next grid point strictly after this frame: skips ahead after a gap instead of bursting.
        step = 1.0 / self.fps
        self._next[stream] = origin + (int((pts - origin) * self.fps + 1e-6) + 1) * step
        return True
