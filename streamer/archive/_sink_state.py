"""What a recorder's sink shares among its threads and its writers: the recorder's settings,
and its tap state, which they all keep up to date.

The decode thread (`streamer.archive._remux.SegmentWriter`) and the writer thread, copying
packets (`streamer.archive._remux`) or encoding frames (`streamer.archive._encode`), with the
catalogue bookkeeping both use (`streamer.archive._segment_log`), report into one `TapState`.
They see the recorder (`streamer.archive.recordings.Recorder`, which makes the sink) only as
`RecorderSettings`, so each imports only what lies below it.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from streamer.sources.tap import TapState

__all__ = ["RecorderSettings", "SinkState"]


class RecorderSettings(Protocol):
    """What a sink reads of its recorder (`Recorder` is one), and the `state` it writes back."""

    stream: str
    folder: Path
    segment_s: float
    audio: bool
    state: TapState


class SinkState:
    """One recorder's settings, and its tap state, updated under one lock from both threads.

    Args:
        recorder: where the files go (`folder`), how they are cut (`segment_s`), whether audio
            is copied, and whose `state` is kept up to date.
    """

    def __init__(self, recorder: RecorderSettings) -> None:
        self.recorder = recorder
        self.folder = recorder.folder
        self._lock = threading.Lock()  # around state updates, from both threads

    @property
    def state(self) -> TapState:
        return self.recorder.state

    def set(self, **changes: Any) -> None:
        """Replace these fields of the recorder's state."""
        with self._lock:
            self.recorder.state = replace(self.recorder.state, **changes)

    def add_dropped(self, count: int) -> None:
        """Count `count` more packets (or frames) dropped."""
        with self._lock:
            state = self.recorder.state
            self.recorder.state = replace(state, dropped=state.dropped + count)
