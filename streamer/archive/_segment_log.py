"""What a recording's writer thread keeps besides its files: the catalogue lines it owes, why
the next segment starts, and when to try again after a write failed.

Both ways of recording a stream use it, on the stream's one writer thread: copying its packets
(`streamer.archive._remux`) and encoding its frames (`streamer.archive._encode`). A connection
is recorded one way or the other, so the two take turns and share the reasons ("reconnect"
after a copied connection, "format" when it came back in another codec or size), the lines a
full disk held back, and the retry after a failure.
"""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer.archive._segments import append_event, file_size

if TYPE_CHECKING:
    from streamer.archive._sink_state import SinkState

__all__ = ["RETRY_S", "SEGMENT_MP4", "SegmentLog", "segment_file_name"]

log = logging.getLogger("streamer.archive")

RETRY_S = 30.0  # after a write error, how long before trying a new segment
FRAGMENT_US = 1_000_000  # a fragment at least every second: what a crash can cost
#: The segment files' format options: fragmented MP4 (the header first, then a fragment at each
#: key frame and at least every `FRAGMENT_US`), each fragment reaching the file as it is made.
SEGMENT_MP4 = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "frag_duration": str(FRAGMENT_US),
    "flush_packets": "1",
}
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class SegmentLog:
    """The writer thread's bookkeeping of one stream's segments.

    Args:
        shared: the stream's sink's share: where the files go, and the tap state it keeps.

    Attributes:
        reason: why the next segment starts ("start", "reconnect", "format", "time",
            "resync", "retry"; see `Segment.reason`).
        retry_at: `time.monotonic()` from when a new segment may be tried after a write
            error; None when all is well.
    """

    def __init__(self, shared: SinkState) -> None:
        self.shared = shared
        self.folder = shared.folder
        self.reason = "start"
        self.retry_at: float | None = None
        self._previous: tuple[str, int, int] | None = None
        self._unwritten: list[dict[str, Any]] = []  # close lines a full disk held back

    def connection(self, shape: tuple[str, int, int]) -> None:
        """A new connection of (codec, width, height): its first segment says why it starts."""
        if self._previous is not None:
            self.reason = "reconnect" if shape == self._previous else "format"
        self._previous = shape
        if self.retry_at is None:
            self.shared.set(state="waiting", detail=None)

    def may_open(self) -> bool:
        """Whether a new segment may start now (not while waiting to retry a failed write)."""
        return self.retry_at is None or time.monotonic() >= self.retry_at

    def new_file(self, start_wall: float) -> tuple[str, Path]:
        """A new segment's file name (unique in the folder) and path."""
        name = segment_file_name(self.folder, start_wall)
        return name, self.folder / name

    def opened(self, file: str, start_wall: float, start_media: float, **fields: Any) -> None:
        """Write a segment's open line (after the close lines a full disk held back).

        Raises:
            OSError: the catalogue cannot be written (the segment is then not started).
        """
        self._write_unwritten()
        append_event(self.folder, {
            "event": "open", "file": file, "start_wall": round(start_wall, 3),
            "start_media": round(start_media, 6), "reason": self.reason, **fields,
        })  # fmt: skip

    def started(self, path: Path, mode: str) -> None:
        """A segment is being written: say so in the tap's state."""
        self.retry_at = None
        self.reason = "time"  # why the next one starts, unless a new connection says otherwise
        state = self.shared.state
        # A failure is over, and so is a decline the decode thread reported for a connection
        # it then handed over as frames (it may land after that connection's FramesStart).
        stale = state.state in ("failed", "declined")
        self.shared.set(state="recording", mode=mode, current=str(path), files=state.files + 1,
                       detail=None if stale else state.detail)  # fmt: skip

    def closed(
        self, file: str, path: Path, start_wall: float, duration: float, frames: int,
        *, complete: bool,
    ) -> None:  # fmt: skip
        """Write a segment's close line; when the disk is full, keep it for later (else the
        segment would pass for the one being written)."""
        size = file_size(path)
        self._unwritten.append({
            "event": "close", "file": file, "start_wall": round(start_wall, 3),
            "end_wall": round(start_wall + duration, 3), "duration": round(duration, 3),
            "frames": frames, "bytes": size, "complete": complete,
        })  # fmt: skip
        try:
            self._write_unwritten()
        except OSError as exc:
            log.warning("%s: the close of %s is not in the catalogue yet (%s)", self.folder,
                        file, exc)  # fmt: skip
        state = self.shared.state
        self.shared.set(bytes=state.bytes + size, current=None)

    def failed(self, exc: BaseException, path: Path) -> None:
        """A write failed (the segment is already ended): say why, and retry `RETRY_S` later."""
        # The disk's own words ("[Errno 28] No space left on device: '…/name.mp4'") would
        # say again what "the disk is full" and the file's name say.
        why = "the disk is full" if _no_room(exc) else f"writing failed ({exc})"
        detail = f"{why}: recording stopped at {path.name}; retrying in {RETRY_S:g} s"
        log.error("%s: %s", self.folder, detail)
        self.shared.set(state="failed", detail=detail, current=None)
        self.retry_at = time.monotonic() + RETRY_S
        self.reason = "retry"

    def _write_unwritten(self) -> None:
        while self._unwritten:
            append_event(self.folder, self._unwritten[0])
            del self._unwritten[0]


def _no_room(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, says the disk is full."""
    while exc is not None:
        if getattr(exc, "errno", None) in _NO_ROOM:
            return True
        exc = exc.__cause__
    return False


def segment_file_name(folder: Path, wall: float) -> str:
    """`20250101T120000.123Z.mp4` (UTC), unique in the folder."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"
    name, number = f"{stamp}.mp4", 1
    while (folder / name).exists():
        number += 1
        name = f"{stamp}-{number}.mp4"
    return name
