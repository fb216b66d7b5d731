"""An archive read for the web: searches, thumbnails, and where each moment's video is.

Every method blocks (LanceDB, the archive's encoder, the disk): the routes
(`streamer.watch.web.archive_routes`) call them in a thread. The archive is opened on first
use, so a viewer can start before its run has created the archive.

A moment is named on the web by its stream and wall time (`MomentKey`): LanceDB's row ids are
not stable (compaction renumbers them), the pair is, and it is what the index is filtered by.

Where a moment plays (`media_of`): a live stream's moment in the recording segment that holds
its wall time (`streamer.archive.recordings.locate`), at its offset into that segment by the
wall clock (as clips are cut: a live moment's media time and its segment's are not on one
clock); a file's in the file itself (the row's `media_path`), at its media time. Only paths
the archive names are ever served: a row's file, or a segment of its catalogue inside its
`recordings/` folder.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from streamer.archive._segments import CATALOGUE, stream_folder
from streamer.archive.archive import Archive
from streamer.archive.embedder import Embedder
from streamer.archive.moments import Moment
from streamer.archive.recordings import Segment, locate, segments, starts_at
from streamer.archive.search import Hit, Query, row_to_moment, sql_string
from streamer.archive.store import RECORDINGS_DIR
from streamer.errors import ConfigError

__all__ = ["ArchiveReader", "Catalogues", "Media", "MomentKey", "media_of"]

KEY_TOLERANCE_S = 1e-6  # a key's wall time matches the row's within this (it is the row's own)


@dataclass(frozen=True, slots=True)
class MomentKey:
    """A moment's stable name: its stream and its wall time (epoch seconds, as stored)."""

    stream: str
    wall: float

    def query(self) -> str:
        """The key as a URL query (`stream=door&at=1714567890.123`)."""
        return urlencode({"stream": self.stream, "at": repr(self.wall)})

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> MomentKey:
        """The key of a request's query.

        Raises:
            ValueError: `stream` or `at` is missing, or `at` is not a finite number.
        """
        stream, at = query.get("stream"), query.get("at")
        if not stream or not at:
            raise ValueError("a moment is named by ?stream=NAME&at=WALL_TIME")
        try:
            wall = float(at)
        except ValueError:
            raise ValueError(f"'at' must be a moment's wall time (seconds), got {at!r}") from None
        if not math.isfinite(wall):
            raise ValueError(f"'at' must be a finite number, got {at!r}")
        return cls(stream, wall)


@dataclass(frozen=True, slots=True)
class Media:
    """Where a moment plays.

    Attributes:
        kind: "recording" (a live stream's segment) or "file" (the input file itself).
        path: the file to serve; None when it is gone.
        offset: seconds into that file where the moment is.
        gone: why it cannot be played (pruned, moved, changed), None when it can.
    """

    kind: str
    path: Path | None
    offset: float
    gone: str | None = None


Locate = Callable[[str, float], "tuple[Segment, float] | None"]


def media_of(root: Path, moment: Moment, find: Locate | None = None) -> Media:
    """Where `moment` of the archive at `root` plays, or why it no longer does.

    Args:
        root: the archive directory.
        moment: the moment.
        find: (stream, wall time) → its segment and the offset into it, as
            `streamer.archive.recordings.locate` (the default) answers.
    """
    if moment.media_path is not None:
        return _file_media(moment)
    try:
        if find is None:
            found = locate(root, moment.stream, moment.wall_time)
        else:
            found = find(moment.stream, moment.wall_time)
    except ConfigError:  # a stream name no recordings folder can have: never recorded
        found = None
    if found is None:
        return Media("recording", None, 0.0, "no recording holds this moment any more "
                     "(removed by retention, or the stream was not recorded then)")  # fmt: skip
    segment, offset = found
    path = root / segment.path
    recordings = (root / RECORDINGS_DIR).resolve()
    if not path.resolve().is_relative_to(recordings):  # a catalogue edited by hand
        return Media("recording", None, 0.0, f"the catalogue names {segment.path}, outside "
                     "the archive's recordings")  # fmt: skip
    if not path.is_file():
        return Media("recording", None, 0.0, f"the recording {segment.path} is missing")
    return Media("recording", path, max(0.0, offset))


def _file_media(moment: Moment) -> Media:
    path = Path(moment.media_path or "")
    try:
        size = path.stat().st_size
    except OSError:
        return Media("file", None, 0.0, f"the file {path.name} is gone from where it was "
                     "indexed (moved or deleted)")  # fmt: skip
    if moment.media_size is not None and size != moment.media_size:
        return Media("file", None, 0.0, f"the file {path.name} changed since it was indexed "
                     f"({moment.media_size} bytes then, {size} now)")  # fmt: skip
    return Media("file", path, max(0.0, moment.media_time))


class Catalogues:
    """Each live stream's recording segments, read again only when its catalogue changes (or
    after `max_age_s`, as whether a segment is being written can change without it).

    `recordings.locate` reads the whole catalogue at every call (a week of one-minute
    segments: about a quarter of a second), and a search locates each of its hits; this
    answers by the same rule from the segments as last read.
    """

    def __init__(self, root: Path, max_age_s: float = 10.0) -> None:
        self.root = root
        self.max_age_s = max_age_s
        self._read: dict[str, tuple[tuple[int, int], float, list[Segment], list[float]]] = {}
        self._lock = threading.Lock()

    def locate(self, stream: str, wall: float) -> tuple[Segment, float] | None:
        """As `recordings.locate`: the segment of `stream` holding wall-clock time `wall` and
        the offset into it; None when none holds it.

        Raises:
            ConfigError: `stream` cannot be a recorded stream's name.
        """
        listed, starts = self._segments(stream)
        index = bisect.bisect_right(starts, wall) - 1
        if index >= 0 and wall <= listed[index].end_estimate(self.root):
            return listed[index], wall - listed[index].start_wall
        later = listed[index + 1] if index + 1 < len(listed) else None
        return (later, 0.0) if later is not None and starts_at(later, wall) else None

    def _segments(self, stream: str) -> tuple[list[Segment], list[float]]:
        catalogue = stream_folder(self.root, stream) / CATALOGUE
        try:
            stat = catalogue.stat()
            version = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            version = (0, 0)
        now = time.monotonic()
        with self._lock:
            read = self._read.get(stream)
            if read is not None and read[0] == version and now - read[1] <= self.max_age_s:
                return read[2], read[3]
        listed = segments(self.root, stream)  # oldest first
        with self._lock:
            self._read[stream] = (version, now, listed, [s.start_wall for s in listed])
        return listed, [s.start_wall for s in listed]


class ArchiveReader:
    """The archive at `root`, read for the web; safe to call from several threads.

    Args:
        root: the archive directory.
        device: where the archive's encoder runs when a search loads it (None: CUDA when
            present).
        embedder: the archive's encoder, already loaded (else loaded at the first search).
        export_cache: where runs keep encoder exports: the first search opens the one a run
            left there, if any (`Archive`).
    """

    def __init__(
        self, root: str | Path, *, device: str | None = None, embedder: Embedder | None = None,
        export_cache: str | Path | None = None,
    ) -> None:  # fmt: skip
        self.root = Path(root)
        self._device, self._export_cache = device, export_cache
        self._embedder = embedder
        self._archive: Archive | None = None
        self._catalogues = Catalogues(self.root)
        self._opening = threading.Lock()
        self._loading = threading.Lock()  # held for seconds: opening waits on it not
        self.encoder_ready = embedder is not None

    def archive(self) -> Archive:
        """The archive, opened on first use.

        Raises:
            ArchiveError: `root` is not (yet) a readable archive.
        """
        with self._opening:
            if self._archive is None:
                self._archive = Archive(self.root, embedder=self._embedder, device=self._device,
                                        export_cache=self._export_cache)  # fmt: skip
            return self._archive

    def info(self) -> dict[str, Any]:
        """What the page shows of the archive: encoder, streams, span, rows."""
        archive = self.archive()
        info = archive.info()
        return {
            "encoder": archive.meta.encoder.describe(),
            "encoder_ready": self.encoder_ready,
            "rows": info.rows,
            "oldest": info.oldest,
            "newest": info.newest,
            "streams": [
                {"stream": s.stream, "rows": s.rows, "first": s.first_wall, "last": s.last_wall}
                for s in info.streams
            ],
        }

    def search(self, text: str | None, **filters: Any) -> list[dict[str, Any]]:
        """The best moments for `text`, as the page shows them (`hit_json`).

        Args:
            text: the words.
            filters: `stream`, `since`, `until`, `tag`, `k`, as `Archive.search` takes them.

        Raises:
            ConfigError: a bad query (empty, unreadable time, unknown stream).
            ArchiveError: the archive or its index cannot be read.
        """
        Query(text, **filters)  # a bad query is refused before the encoder loads
        archive = self.archive()
        if archive.table() is not None:
            self._load_encoder(archive)
        hits = archive.search(text, **filters)
        return [self.hit_json(hit) for hit in hits]

    def ready(self) -> Archive:
        """The archive with its encoder loaded (a question searches by words at once).

        Raises:
            ArchiveError: `root` is not (yet) a readable archive.
        """
        archive = self.archive()
        if archive.table() is not None:
            self._load_encoder(archive)
        return archive

    def hit_json(self, hit: Hit) -> dict[str, Any]:
        """A hit as the page and `/api/search` show it: the moment, its thumbnail's URL and
        where it plays (`media`: URL and offset, or null with `media_gone` saying why)."""
        moment = hit.moment
        key = MomentKey(moment.stream, moment.wall_time).query()
        media = media_of(self.root, moment, self._catalogues.locate)
        where = None
        if media.path is not None:
            where = {"url": f"archive/media?{key}", "offset": round(media.offset, 3),
                     "kind": media.kind}  # fmt: skip
        return {
            "stream": moment.stream,
            "wall_time": moment.wall_time,
            "time": _iso(moment.wall_time),
            "media_time": moment.media_time,
            "caption": moment.caption,
            "caption_source": moment.caption_source,
            "tags": [[label, round(score, 4)] for label, score in moment.tags],
            "alerts": list(moment.alerts),
            "score": round(hit.score, 6),
            "similarity": None if hit.similarity is None else round(hit.similarity, 4),
            "thumbnail": f"archive/thumbnail.jpg?{key}" if moment.thumbnail else None,
            "media": where,
            "media_gone": media.gone,
        }

    def moment(self, key: MomentKey) -> Moment | None:
        """The row named by `key`, None when the archive has none such.

        Raises:
            ArchiveError: the index cannot be read.
        """
        table = self.archive().table()
        if table is None:
            return None
        where = (
            f"stream = {sql_string(key.stream)} AND wall_time >= {key.wall - KEY_TOLERANCE_S!r} "
            f"AND wall_time <= {key.wall + KEY_TOLERANCE_S!r}"
        )
        with table.failures():
            rows = table.lance.search().where(where).limit(4).to_arrow().to_pylist()
        if not rows:
            return None
        return row_to_moment(min(rows, key=lambda row: abs(row["wall_time"] - key.wall)))

    def thumbnail(self, key: MomentKey) -> bytes | None:
        """The moment's JPEG thumbnail; None when there is no such moment or it has none."""
        moment = self.moment(key)
        return None if moment is None else moment.thumbnail

    def media(self, key: MomentKey) -> Media | None:
        """Where the moment plays; None when there is no such moment."""
        moment = self.moment(key)
        return None if moment is None else media_of(self.root, moment, self._catalogues.locate)

    def _load_encoder(self, archive: Archive) -> None:
        with self._loading:  # one load, however many searches come at once
            archive.embedder  # noqa: B018 - the property loads it (seconds, the first time)
            self.encoder_ready = True


def _iso(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")
