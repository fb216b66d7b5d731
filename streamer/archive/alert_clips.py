"""Alert clips: with `--archive`, every alert keeps a clip of its stream around the alert.

::

    an alert fires ─► AlertClips.assign: the clip's path, decided now, goes on the alert (its
      │               JSON Lines record, webhook body and viewer event carry it)
      ├─ a file: cut from the file itself at once, in its media time (`cut_clip`)
      └─ a live stream: waits until its recording holds the alert's time + `after`, then cut
         from the recordings (`clip_from_recordings`)

    DIR/clips/<stream>/20250101T120000.123Z-a-person-at-the-door.mp4   a live stream's (UTC)
    DIR/clips/<stream>/00h01m02.500s-a-person-at-the-door.mp4          a file's (media time)
    DIR/clips/clips.jsonl       one line per clip written or given up on, with its real span

A live stream's recording reaches the disk a fragment at a time (one a second, see
`streamer.archive._remux`), so a clip is first tried `SETTLE_S` after its end; the clip's real
end says whether the recording held all of it, and a clip cut short is tried again every
`RETRY_S` until `GIVE_UP_S` after its end, then kept as it is. At the end of the run the clips
still waiting are cut from what was recorded. A clip is written beside its place and renamed
into it, so a reader never sees half of one.

The cutting runs on a low-priority thread of its own, never on the event loop: a clip that
must be encoded again (no key frame near its start) takes seconds, and the frames never wait.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from streamer.core.background import LowPriorityPool
from streamer.errors import StreamerError

__all__ = ["CLIPS", "AlertClips", "clip_name"]

log = logging.getLogger("streamer.archive")

CLIPS = "clips"  # DIR/clips/<stream>/
CATALOGUE = "clips.jsonl"
SETTLE_S = 2.5  # a clip's end is on the disk this long after it (a fragment a second, a GOP)
RETRY_S = 1.0  # a live clip cut short is tried again this often ...
GIVE_UP_S = 30.0  # ... until this long after its end (the camera is gone, the disk is full)
TOLERANCE_S = 0.5  # a clip that ends this close to the asked end holds it all
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(slots=True)
class _Job:
    """One clip to cut: `start`..`end` in the file's media time (`media` is its path) or, for a
    live stream (`media` None), on the wall clock."""

    stream: str
    name: str  # relative to the archive directory
    query: str
    start: float
    end: float
    media: str | None
    due: float = 0.0  # wall clock: when a live clip is tried next


def clip_name(stream: str, query: str, *, wall: float | None = None,
              media_time: float | None = None) -> str:  # fmt: skip
    """Where an alert's clip goes, relative to the archive directory: a readable name that is
    safe in a path and a URL (`clips/<stream>/<time>-<query>.mp4`).

    Args:
        stream: the stream's name.
        query: the alert's query.
        wall: a live alert's time (`time.time()`): named by it, in UTC.
        media_time: a file's alert: named by its media time (the same every run).
    """
    if media_time is not None:
        ms = round(media_time * 1000)
        stamp = f"{ms // 3_600_000:02d}h{ms // 60_000 % 60:02d}m{ms % 60_000 / 1000:06.3f}s"
    elif wall is not None:
        ms = int(wall * 1000)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
    else:
        raise ValueError("a clip is named by its wall time or its media time")
    return f"{CLIPS}/{_safe(stream, 64, 'stream')}/{stamp}-{_safe(query.lower(), 48, 'alert')}.mp4"


def _safe(text: str, limit: int, fallback: str) -> str:
    """`text` with every run of other characters than letters, digits, `_`, `.`, `-` made one
    `-`, no `.` or `-` at either end (no hidden file, no `..`), at most `limit` long."""
    slug = _UNSAFE.sub("-", text).strip(".-")[:limit].strip(".-")
    return slug or fallback


class AlertClips:
    """The clips of a run's alerts: named when an alert fires, cut when their span is there.

    Args:
        root: the archive directory.
        before_s: a clip starts this long before its alert.
        after_s: ... and ends this long after it.
        clock: wall-clock seconds (injectable for tests).

    Attributes:
        written: clips written so far.
        failed: clips given up on (nothing recorded of their span, a write error).
    """

    def __init__(
        self, root: str | os.PathLike[str], before_s: float, after_s: float,
        clock: Any = time.time,
    ) -> None:  # fmt: skip
        self.root = Path(root)
        self.before_s = before_s
        self.after_s = after_s
        self.written = 0
        self.failed = 0
        self._clock = clock
        self._pool = LowPriorityPool("archive-clips", workers=1)
        self._lock = threading.Lock()
        self._waiting: list[_Job] = []
        self._busy = 0  # handed to the thread, not done
        self._names: set[str] = set()
        self._finishing = False

    @property
    def waiting(self) -> int:
        """Clips named but not written or given up on yet."""
        with self._lock:
            return len(self._waiting) + self._busy

    def assign(
        self, stream: str, query: str, *, wall: float, media: str | None = None,
        media_time: float = 0.0, name: str | None = None,
    ) -> str:  # fmt: skip
        """Name the clip of an alert and set it to be cut (event loop: returns at once).

        Args:
            stream: the stream it fired on.
            query: its query.
            wall: when its frame was captured (`time.time()`): a live clip's middle.
            media: a file stream's file (absolute): the clip is cut from it, around
                `media_time`; None for a live stream (cut from its recordings).
            media_time: a file's alert: its frame's media time.
            name: the name already given where the alert fired (`ClipNamer`, on a cluster's
                shard); None: named here, by the same rule.

        Returns:
            The clip's path relative to the archive directory.
        """
        if media is not None:
            name = self._unique(name or clip_name(stream, query, media_time=media_time),
                                reuse=True)  # fmt: skip
            start = max(0.0, media_time - self.before_s)
            self._submit(_Job(stream, name, query, start, media_time + self.after_s, media))
            return name
        name = self._unique(name or clip_name(stream, query, wall=wall), reuse=False)
        end = wall + self.after_s
        job = _Job(stream, name, query, wall - self.before_s, end, None, due=end + SETTLE_S)
        with self._lock:
            self._waiting.append(job)
        return name

    def poll(self) -> None:
        """Hand the live clips whose time has come to the cutting thread (event loop)."""
        now = self._clock()
        with self._lock:
            due = [job for job in self._waiting if job.due <= now]
            self._waiting = [job for job in self._waiting if job.due > now]
        for job in due:
            self._submit(job)

    def finish(self) -> None:
        """The run is over (its recordings closed): cut every clip still waiting from what was
        recorded, and wait for the cutting to end. Blocking: run it on a thread."""
        with self._lock:
            self._finishing = True
            jobs, self._waiting = self._waiting, []
        for job in jobs:
            self._submit(job)
        self._pool.shutdown()

    def _unique(self, name: str, *, reuse: bool) -> str:
        """`name`, or `name-2.mp4`, ... when this run named it already, or (unless `reuse`:
        a file's clip of an earlier run is the same span of the same file) it exists."""
        stem, number, candidate = name.removesuffix(".mp4"), 1, name
        while candidate in self._names or (not reuse and (self.root / candidate).exists()):
            number += 1
            candidate = f"{stem}-{number}.mp4"
        self._names.add(candidate)
        return candidate

    def _submit(self, job: _Job) -> None:
        with self._lock:
            self._busy += 1
        self._pool.executor.submit(self._cut, job)

    def _cut(self, job: _Job) -> None:
        """Cut one clip (the clips' thread); a live one cut short goes back to wait."""
        from streamer.archive.clips import clip_from_recordings, cut_clip

        out = self.root / job.name
        part = out.with_name(out.name.removesuffix(".mp4") + ".part.mp4")
        try:
            if job.media is not None:
                result = cut_clip(job.media, job.start, job.end, part)
            else:
                result = clip_from_recordings(self.root, job.stream, job.start, job.end, part)
            if self._short(job, result.end):
                part.unlink(missing_ok=True)
                return
            os.replace(part, out)
        except Exception as exc:  # counted, logged and noted in the catalogue; the run goes on
            part.unlink(missing_ok=True)
            self._done(job, None, exc)
            return
        self._done(job, result, None)

    def _short(self, job: _Job, end: float) -> bool:
        """Whether a live clip ended before its span did while more may yet be recorded; it
        then waits again (it stays counted as waiting)."""
        now = self._clock()
        with self._lock:
            if job.media is not None or self._finishing or end >= job.end - TOLERANCE_S:
                return False
            if now >= job.end + GIVE_UP_S:
                return False
            job.due = now + RETRY_S
            self._waiting.append(job)
            self._busy -= 1
            return True

    def _done(self, job: _Job, result: Any, error: BaseException | None) -> None:
        with self._lock:
            self._busy -= 1
            if error is None:
                self.written += 1
            else:
                self.failed += 1
        clock = "media" if job.media is not None else "wall"
        line: dict[str, Any] = {
            "clip": job.name, "stream": job.stream, "alert": job.query, "clock": clock,
            "requested": [round(job.start, 3), round(job.end, 3)],
        }  # fmt: skip
        if error is None:
            line |= {"state": "written", "start": round(result.start, 3),
                     "end": round(result.end, 3), "copied": result.copied}  # fmt: skip
            log.info("archive: alert clip %s written", job.name)
        else:
            line |= {"state": "failed", "error": f"{type(error).__name__}: {error}"}
            # What a recording or a disk does needs no traceback; anything else is a bug.
            expected = isinstance(error, StreamerError | OSError | av.FFmpegError)
            log.warning("archive: the clip %s of the alert %r could not be cut: %s", job.name,
                        job.query, error, exc_info=None if expected else error)  # fmt: skip
        self._note(line)

    def _note(self, line: dict[str, Any]) -> None:
        """Append a line to the clips' catalogue (a full disk: logged, the clip counted)."""
        text = json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            (self.root / CLIPS).mkdir(parents=True, exist_ok=True)
            with open(self.root / CLIPS / CATALOGUE, "a", encoding="utf-8") as catalogue:
                catalogue.write(text)
        except OSError as exc:
            log.warning("archive: the clips' catalogue cannot be written: %s", exc)
