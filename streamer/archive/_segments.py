"""The recordings catalogue: `DIR/recordings/<stream>/segments.jsonl`, one per stream.

One JSON object a line, appended whole and flushed (one `write` on an `O_APPEND` file, then
`fsync`): a line is there entirely or, after a crash in the middle of it, torn, and a line that
is not JSON is skipped on reading. Events:

    {"event": "open", "file": "20250101T120000.000Z.mp4", "start_wall": ..., "start_media": ...,
     "reason": "start" | "reconnect" | "format" | "time" | "resync" | "retry",
     "codec": "h264", "width": 320, "height": 180, "audio": "aac" | null,
     "encoded": "mjpeg"}                      (only for frames encoded: the source's codec)
    {"event": "close", "file": ..., "end_wall": ..., "start_wall": ..., "duration": ...,
     "frames": ..., "bytes": ..., "complete": true | false}

A segment with an "open" line and no "close" line is being written, or was cut short (the
process died): the writer's lock tells which. Two lock files beside the catalogue, taken with
`flock` (released by the kernel when a process dies):

- `.writer.lock`, held by the one process that records the stream, for as long as it does;
- `.catalogue.lock`, held briefly around an append and around a rewrite (`prune`), so that a
  line appended while the catalogue is being rewritten is not lost.

A writer that starts repairs what a dead one left (`repair`): it ends a torn last line and
closes the segments left open, as cut short (`"complete": false, "repaired": true`), with
their length read from the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from streamer.errors import ConfigError

__all__ = ["CATALOGUE", "RECORDINGS", "Segment", "append_event", "stream_folder"]

log = logging.getLogger("streamer.archive")

RECORDINGS = "recordings"  # DIR/recordings/<stream>/
CATALOGUE = "segments.jsonl"
WRITER_LOCK = ".writer.lock"
CATALOGUE_LOCK = ".catalogue.lock"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True, slots=True)
class Segment:
    """One recorded file of a live stream, as its catalogue has it.

    Attributes:
        stream: the stream's name.
        path: the file, relative to the archive directory (`recordings/<stream>/<file>.mp4`).
        start_wall: wall-clock time (`time.time()`) of its first frame.
        end_wall: wall-clock time of its end; None while it is being written, or when it was
            cut short (its writer died) and no writer has looked at it since.
        start_media: the stream's own time (seconds) of its first frame: the packets'
            timestamps, which the file keeps rebased to start at 0.
        bytes: its size.
        complete: it was finished normally. False while being written, and for a file cut
            short by a crash or a write error: it still plays up to its last fragment.
        writing: it is being written now (its writer holds the stream's lock); `prune` never
            removes it.
        duration: seconds of video in it, once known (closed or repaired).
        reason: why it started: "start" (the first connection), "reconnect", "format" (the
            stream came back in another codec or size), "time" (the previous one was long
            enough), "resync" (the writer fell behind and dropped packets), "retry" (after a
            write error).
        codec, width, height: its video; audio: its audio codec, None for none.
        frames: video frames in it, once known.
        encoded: the source's codec ("mjpeg", "camera") when the segment holds its decoded
            frames, encoded (its packets could not be copied); None for copied packets.
    """

    stream: str
    path: str
    start_wall: float
    end_wall: float | None
    start_media: float
    bytes: int
    complete: bool
    writing: bool = False
    duration: float | None = None
    reason: str = "start"
    codec: str = ""
    width: int = 0
    height: int = 0
    audio: str | None = None
    frames: int | None = None
    encoded: str | None = None

    def end_estimate(self, root: Path) -> float:
        """Where it ends on the wall clock: `end_wall` when known; now while it is being
        written; else (cut short) its file's last write, or its start when the file is gone."""
        if self.end_wall is not None:
            return self.end_wall
        if self.writing:
            return time.time()
        try:
            return max(self.start_wall, (root / self.path).stat().st_mtime)
        except OSError:
            return self.start_wall


def stream_folder(root: Path, stream: str) -> Path:
    """`root/recordings/<stream>`.

    Raises:
        ConfigError: `stream` is not a name a folder can have safely (stream names are made of
            letters, digits, `_`, `.` and `-`, and are never `.` or `..`).
    """
    if not _SAFE_NAME.match(stream) or stream in (".", ".."):
        raise ConfigError(
            f"stream name {stream!r} cannot name a recordings folder: use letters, digits, "
            "'_', '.' and '-'"
        )
    return Path(root) / RECORDINGS / stream


# -- locks -------------------------------------------------------------------------------------


@contextlib.contextmanager
def catalogue_lock(folder: Path) -> Iterator[None]:
    """Hold the stream's catalogue lock (briefly: an append or a rewrite)."""
    fd = os.open(folder / CATALOGUE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def hold_writer_lock(folder: Path, wait_s: float = 0.5) -> int:
    """Take the stream's writer lock for as long as the returned descriptor stays open.

    Raises:
        BlockingIOError: another process (or another recorder of this one) holds it.
    """
    fd = os.open(folder / WRITER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            # A reader probing the lock holds it for an instant: try again before giving up.
            if time.monotonic() >= deadline:
                os.close(fd)
                raise
            time.sleep(0.05)


def writer_active(folder: Path) -> bool:
    """Whether a process records the stream now (holds its writer lock)."""
    try:
        fd = os.open(folder / WRITER_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# -- the catalogue -----------------------------------------------------------------------------


def append_event(folder: Path, event: dict[str, Any]) -> None:
    """Append one event as one complete line, flushed to the disk.

    Raises:
        OSError: it could not be written (the disk is full, ...).
    """
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    with catalogue_lock(folder):
        fd = os.open(folder / CATALOGUE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a short write: only when the disk fills mid-line
                raise OSError(errno.ENOSPC, "catalogue line written in part")
            os.fsync(fd)
        finally:
            os.close(fd)


def end_torn_line(folder: Path) -> None:
    """After a crash the catalogue may end in a torn line: end it, so that the next event
    starts a line of its own (the torn one is skipped on reading)."""
    path = folder / CATALOGUE
    if not path.exists():
        return
    with catalogue_lock(folder), contextlib.suppress(FileNotFoundError):
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            if file.tell() == 0:
                return
            file.seek(-1, os.SEEK_END)
            if file.read(1) == b"\n":
                return
        with path.open("ab") as file:
            file.write(b"\n")
            file.flush()
            os.fsync(file.fileno())


def read_events(folder: Path) -> list[dict[str, Any]]:
    """The catalogue's events in order; lines that are not JSON objects (a torn last line
    after a crash) are skipped."""
    try:
        raw = (folder / CATALOGUE).read_bytes()
    except FileNotFoundError:
        return []
    events = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            log.debug("%s line %d is not JSON (torn by a crash?): skipped", folder, number)
            continue
        if isinstance(event, dict) and isinstance(event.get("file"), str):
            events.append(event)
    return events


def stream_segments(root: Path, stream: str) -> list[Segment]:
    """The segments of one stream, oldest first."""
    folder = stream_folder(root, stream)
    opened: dict[str, dict[str, Any]] = {}
    closed: dict[str, dict[str, Any]] = {}
    for event in read_events(folder):
        kind = event.get("event")
        if kind == "open" and _number(event.get("start_wall")) is not None:
            opened[event["file"]] = event
        elif kind == "close":
            closed[event["file"]] = event
    active = writer_active(folder)
    last_open = next((f for f in reversed(opened) if f not in closed), None)
    found = []
    for name, start in opened.items():
        end = closed.get(name)
        found.append(_segment(root, stream, start, end, writing=active and name == last_open))
    return sorted(found, key=lambda s: s.start_wall)


def _segment(
    root: Path, stream: str, start: dict[str, Any], end: dict[str, Any] | None, *, writing: bool
) -> Segment:
    path = f"{RECORDINGS}/{stream}/{start['file']}"
    end = end or {}
    size = _number(end.get("bytes"))
    if size is None:
        try:
            size = (root / path).stat().st_size
        except OSError:
            size = 0
    return Segment(
        stream=stream,
        path=path,
        start_wall=float(_number(end.get("start_wall")) or start["start_wall"]),
        end_wall=_number(end.get("end_wall")),
        start_media=float(_number(start.get("start_media")) or 0.0),
        bytes=int(size),
        complete=bool(end.get("complete", False)),
        writing=writing,
        duration=_number(end.get("duration")),
        reason=str(start.get("reason", "start")),
        codec=str(start.get("codec", "")),
        width=int(_number(start.get("width")) or 0),
        height=int(_number(start.get("height")) or 0),
        audio=_text(start.get("audio")),
        frames=_int(end.get("frames")),
        encoded=_text(start.get("encoded")),
    )


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def stream_names(root: Path) -> list[str]:
    """The streams that have a recordings folder with a catalogue, by name."""
    folder = Path(root) / RECORDINGS
    if not folder.is_dir():
        return []
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_dir() and _SAFE_NAME.match(entry.name) and (entry / CATALOGUE).exists()
    )


def rewrite_without(folder: Path, files: set[str]) -> None:
    """Rewrite the catalogue without the events of `files`, atomically (a new file renamed
    over the old one), under the catalogue lock so that no append is lost meanwhile."""
    path = folder / CATALOGUE
    temporary = folder / f".{CATALOGUE}.tmp"
    with catalogue_lock(folder):
        try:
            lines = path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return
        kept = [line for line in lines if line.strip() and _file_of(line) not in files]
        with temporary.open("wb") as out:
            out.write(b"".join(line + b"\n" for line in kept))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        _sync_folder(folder)


def _file_of(line: bytes) -> str | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # a torn line: kept as it is, skipped on reading as before
    return event.get("file") if isinstance(event, dict) else None


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- repairs ------------------------------------------------------------------------------------


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def repair(folder: Path) -> None:
    """Close, in the catalogue, the segments a dead writer left open: they were cut short.
    Their length is read from the file (demuxing, no decoding)."""
    end_torn_line(folder)
    opened: dict[str, dict[str, Any]] = {}
    for event in read_events(folder):
        if event.get("event") == "open":
            opened[event["file"]] = event
        elif event.get("event") == "close":
            opened.pop(event["file"], None)
    for file, event in opened.items():
        path = folder / file
        duration, frames = _measure(path)
        start = float(event.get("start_wall", 0.0))
        append_event(folder, {
            "event": "close", "file": file, "start_wall": start,
            "end_wall": round(start + duration, 3), "duration": round(duration, 3),
            "frames": frames, "bytes": file_size(path), "complete": False, "repaired": True,
        })  # fmt: skip
        log.info("%s: %s was cut short at %.1f s; it plays to there", folder, file, duration)


def repair_idle(root: Path) -> list[str]:
    """Repair the catalogue of every stream that no process records now (`repair`): what a
    run killed mid-segment left open is closed, as cut short. A stream being recorded is left
    to its writer, which repaired it when it started.

    Returns:
        The streams looked at and repaired (those with nothing open are unchanged).

    Raises:
        OSError: a catalogue cannot be read or written.
    """
    repaired = []
    for stream in stream_names(root):
        folder = stream_folder(root, stream)
        try:
            fd = hold_writer_lock(folder, wait_s=0.0)
        except BlockingIOError:
            continue
        try:
            repair(folder)
        finally:
            os.close(fd)
        repaired.append(stream)
    return repaired


def _measure(path: Path) -> tuple[float, int]:
    """Seconds and video frames in a (maybe cut short) segment, read packet by packet."""
    end, frames = 0.0, 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.is_corrupt:  # cut in the middle by the crash: it does not play
                    break
                if packet.pts is None or not packet.size:
                    continue
                frames += 1
                tb = Fraction(packet.time_base)
                end = max(end, float((packet.pts + packet.duration) * tb))
    except (OSError, IndexError, av.FFmpegError):
        pass  # what was read so far is what plays
    return end, frames
