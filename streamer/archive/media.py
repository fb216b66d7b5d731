"""Where a moment's media is now: checked at search time, so that no hit points at a file that
is gone, moved or changed without saying so.

A file's moments refer to the file itself (its path, size and modification time when it was
indexed); a live stream's to its recordings, found by stream and wall time. Either can go away
after the index was written: a file moved or edited, a segment pruned, deleted, or cut short
by a crash before the moment's time. Nothing is repaired or guessed at here beyond one cheap
look: a file gone from its path but found, with the same name, size and modification time,
beside the archive or in the current directory, is "moved" there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from streamer.archive._segments import Segment, stream_segments
from streamer.archive.moments import Moment
from streamer.archive.recordings import holding
from streamer.errors import ConfigError

__all__ = ["MEDIA_STATES", "MediaCheck", "MediaChecker"]

#: What `MediaCheck.state` can be.
MEDIA_STATES = ("ok", "missing", "moved", "changed")
_MTIME_SLACK_S = 1e-3  # file systems keep times at different precisions (and JSON rounds)


@dataclass(frozen=True, slots=True)
class MediaCheck:
    """Where a moment can be watched now.

    Attributes:
        state: "ok" (as indexed), "missing" (the file is gone, or no recording holds the
            moment: pruned, deleted, or after the last fragment of a segment cut short),
            "moved" (the file is gone from its path, and was found with the same name, size
            and modification time at `path`), "changed" (the file is there but its size or
            modification time is not what was indexed: its times may no longer match).
        path: the file that holds the moment now (a file input, or a recording segment);
            None when missing.
        offset: seconds into `path` where the moment is; None when missing.
    """

    state: str
    path: str | None = None
    offset: float | None = None


class MediaChecker:
    """Checks moments of one archive, reading each stream's catalogue once.

    Args:
        root: the archive directory (its recordings hold the live streams' media).
        look_in: folders where a file gone from its path is looked for, by name (default:
            the folder that holds the archive, and the current directory).
    """

    def __init__(self, root: str | Path, look_in: tuple[Path, ...] | None = None) -> None:
        self.root = Path(root)
        self.look_in = look_in if look_in is not None else (self.root.parent, Path.cwd())
        self._segments: dict[str, list[Segment]] = {}

    def check(self, moment: Moment) -> MediaCheck:
        """Where `moment` is now (see `MediaCheck`)."""
        if moment.media_path is not None:
            return self._file(moment)
        return self._recording(moment)

    def _file(self, moment: Moment) -> MediaCheck:
        path = Path(moment.media_path or "")
        try:
            stat = path.stat()
        except OSError:
            return self._moved(moment, path)
        if not path.is_file():
            return MediaCheck("missing")
        state = "ok" if _same(stat, moment.media_size, moment.media_mtime) else "changed"
        return MediaCheck(state, str(path), moment.media_time)

    def _moved(self, moment: Moment, path: Path) -> MediaCheck:
        """A file gone from its path: "moved" when the same file is in one of `look_in`."""
        for folder in self.look_in:
            candidate = folder / path.name
            if candidate == path:
                continue
            try:
                stat = candidate.stat()
            except OSError:
                continue
            if candidate.is_file() and _same(stat, moment.media_size, moment.media_mtime):
                return MediaCheck("moved", str(candidate.resolve()), moment.media_time)
        return MediaCheck("missing")

    def _recording(self, moment: Moment) -> MediaCheck:
        found = self._locate(moment.stream, moment.wall_time)
        if found is None:
            return MediaCheck("missing")
        segment, offset = found
        path = self.root / segment.path
        try:
            size = path.stat().st_size
        except OSError:
            return MediaCheck("missing")
        # A finished segment's size is in the catalogue; one being written grows.
        changed = segment.end_wall is not None and not segment.writing and size != segment.bytes
        return MediaCheck("changed" if changed else "ok", str(path), offset)

    def _locate(self, stream: str, wall: float) -> tuple[Segment, float] | None:
        found = self._segments.get(stream)
        if found is None:
            try:
                found = stream_segments(self.root, stream)
            except (ConfigError, OSError):  # a name no folder can have; an unreadable one
                found = []
            self._segments[stream] = found
        return holding(found, self.root, wall)


def _same(stat: os.stat_result, size: int | None, mtime: float | None) -> bool:
    """Whether a file is the one indexed: same size and modification time (when known)."""
    if size is not None and stat.st_size != size:
        return False
    return mtime is None or abs(stat.st_mtime - mtime) <= _MTIME_SLACK_S
