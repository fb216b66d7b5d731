"""Retention: the archive keeps `--retain` of time and stays under `--archive-max-gb`.

Whole recording segments go, oldest first, never the one being written
(`streamer.archive.recordings.prune`); the index rows go with them: rows older than `retain_s`
(files' rows too), and a live stream's rows older than its oldest remaining recording, which
would otherwise point at media that is gone. Alert clips (`DIR/clips/<stream>/`) older than
`retain_s` go too: a camera that alerts all day would otherwise fill the disk with them. Used by
a running archive now and then, and by `streamer archive prune DIR`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.archive.alert_clips import CLIPS
from streamer.archive.recordings import prune, segments

__all__ = ["Pruned", "apply_retention", "prune_clips"]

log = logging.getLogger("streamer.archive")


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pass of retention removed.

    Attributes:
        segments: recording segments deleted.
        segment_bytes: their size on disk.
        rows: index rows deleted.
        clips: alert clips deleted.
    """

    segments: int
    segment_bytes: int
    rows: int
    clips: int = 0


def apply_retention(
    archive: Any, *, retain_s: float | None, max_gb: float | None, now: float | None = None
) -> Pruned:
    """Delete what the limits no longer keep (blocking: run it in a thread).

    Args:
        archive: an open `Archive` (a running one holds the writer lock; another takes it).
        retain_s: keep this many seconds; None keeps every age.
        max_gb: keep the recordings under this many GB (10⁹ bytes); None: no limit.
        now: the present, seconds since the epoch (tests pass their own).

    Raises:
        ArchiveError: the index cannot be written (or another run writes it).
    """
    now = time.time() if now is None else now
    max_bytes = int(max_gb * 1e9) if max_gb is not None else None
    removed = prune(archive.root, retain_s=retain_s, max_bytes=max_bytes, now=now)
    rows = 0
    if retain_s is not None:
        rows += archive.prune_index(now - retain_s)
    for stream in sorted({segment.stream for segment in removed}):
        left = segments(archive.root, stream)
        # rows before the oldest recording left point at nothing; with none left, at nothing
        # before the last one removed
        before = left[0].start_wall if left else max(s.start_wall for s in removed) + 1e-3
        rows += archive.prune_index(before, stream=stream)
    clips = prune_clips(archive.root, now - retain_s) if retain_s is not None else 0
    return Pruned(len(removed), sum(s.bytes for s in removed), rows, clips)


def prune_clips(root: Path | str, before: float) -> int:
    """Delete the alert clips last written before `before` (seconds since the epoch); their
    lines in `clips.jsonl` stay, a record of what was cut. Returns how many went."""
    gone = 0
    for clip in sorted(Path(root, CLIPS).glob("*/*.mp4")):
        with contextlib.suppress(FileNotFoundError):  # removed by someone else meanwhile
            if clip.stat().st_mtime < before:
                clip.unlink()
                gone += 1
    if gone:
        log.info("archive: removed %d old alert clips", gone)
    return gone
