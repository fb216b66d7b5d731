"""Summaries: what the LLM said about a stretch of a stream, kept beside the moments.

A second LanceDB table, `DIR/index/summaries.lance`, holds one row per `Summary`: a live
stream's window (`--summary-every`, kind "window") or a whole file (`--summary`, kind "file",
with its chapters). Each summary keeps the moments it cites by their row keys in the moments
table (stream, media time, wall time), so a reader can go from a sentence to its evidence.
A summary's text has its citations written out (`[door @ 12:03:04]`): it reads on its own.

Summaries are few (one per stream per window), so they are listed with a filter and ranked in
Python (`streamer.archive.ask`); the table needs no index. The records load without pyarrow
(a run's summary observer needs only them); the table loads it when used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamer.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "Chapter",
    "MomentRef",
    "Summary",
    "SummaryTable",
    "overlapping",
    "summaries_schema",
]

TABLE = "summaries"


@dataclass(frozen=True)
class MomentRef:
    """A moment a summary or an answer cites: the row keys of the moments table.

    Attributes:
        stream: the stream's name.
        media_time: the moment's time in its stream, seconds.
        wall_time: when it was seen, epoch seconds.
    """

    stream: str
    media_time: float
    wall_time: float


@dataclass(frozen=True)
class Chapter:
    """One chapter of a file: a run of moments between scene changes.

    Attributes:
        start, end: media time, seconds.
        title: a few words.
        source: "llm" (titled by the LLM) or "tags" (its top tags).
    """

    start: float
    end: float
    title: str
    source: str


@dataclass(frozen=True)
class Summary:
    """What the LLM said about a stretch of one stream.

    Attributes:
        stream: the stream's name.
        kind: "window" (a live stream's last `--summary-every`) or "file" (a whole file).
        start_wall, end_wall: the stretch in wall time, epoch seconds.
        start_media, end_media: the stretch in the stream's time, seconds.
        text: the summary, its citations written out as `[stream @ time]`.
        cited: the moments it cites, in order of first citation.
        model: the model that wrote it.
        made_at: when it was written, epoch seconds.
        chapters: a file's chapters (kind "file"), in order.
        media_path: a file's path (kind "file"); None for a live stream.
    """

    stream: str
    kind: str
    start_wall: float
    end_wall: float
    start_media: float
    end_media: float
    text: str
    cited: tuple[MomentRef, ...] = ()
    model: str | None = None
    made_at: float = 0.0
    chapters: tuple[Chapter, ...] = field(default=())
    media_path: str | None = None


def summaries_schema() -> pa.Schema:
    """The table's Arrow schema."""
    import pyarrow as pa

    chapter = pa.struct(
        [("start", pa.float64()), ("end", pa.float64()), ("title", pa.string()),
         ("source", pa.string())]
    )  # fmt: skip
    return pa.schema(
        [
            pa.field("stream", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("start_wall", pa.float64(), nullable=False),
            pa.field("end_wall", pa.float64(), nullable=False),
            pa.field("start_media", pa.float64(), nullable=False),
            pa.field("end_media", pa.float64(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("cited_media", pa.list_(pa.float64())),
            pa.field("cited_wall", pa.list_(pa.float64())),
            pa.field("model", pa.string()),
            pa.field("made_at", pa.float64()),
            pa.field("chapters", pa.list_(chapter)),
            pa.field("media_path", pa.string()),
        ]
    )


def _to_row(summary: Summary) -> dict[str, Any]:
    if any(ref.stream != summary.stream for ref in summary.cited):
        raise ValueError(f"a summary of {summary.stream!r} cites only its own stream's moments")
    return {
        "stream": summary.stream,
        "kind": summary.kind,
        "start_wall": float(summary.start_wall),
        "end_wall": float(summary.end_wall),
        "start_media": float(summary.start_media),
        "end_media": float(summary.end_media),
        "text": summary.text,
        "cited_media": [float(ref.media_time) for ref in summary.cited],
        "cited_wall": [float(ref.wall_time) for ref in summary.cited],
        "model": summary.model,
        "made_at": float(summary.made_at),
        "chapters": [vars(chapter) for chapter in summary.chapters],
        "media_path": summary.media_path,
    }


def _from_row(row: dict[str, Any]) -> Summary:
    cited = zip(row["cited_media"] or (), row["cited_wall"] or (), strict=False)
    return Summary(
        stream=row["stream"],
        kind=row["kind"],
        start_wall=row["start_wall"],
        end_wall=row["end_wall"],
        start_media=row["start_media"],
        end_media=row["end_media"],
        text=row["text"],
        cited=tuple(MomentRef(row["stream"], media, wall) for media, wall in cited),
        model=row["model"],
        made_at=row["made_at"] or 0.0,
        chapters=tuple(Chapter(**chapter) for chapter in row["chapters"] or ()),
        media_path=row["media_path"],
    )


class SummaryTable:
    """The summaries table of one archive (use `SummaryTable.open`).

    Reading needs no lock; adding belongs to the archive's one writer.

    Attributes:
        lance: the LanceDB table.
        path: its directory, for messages.
    """

    def __init__(self, lance: Any, path: Path) -> None:
        self.lance = lance
        self.path = path

    @classmethod
    def open(cls, index_dir: str | Path, *, create: bool = False) -> SummaryTable | None:
        """Open the table in the LanceDB database at `index_dir`.

        Returns:
            The table, or None when there is none and `create` is false.

        Raises:
            ArchiveError: the table cannot be opened or made (damaged, unreadable, disk full).
        """
        from streamer.archive.index import open_lance_table

        opened = open_lance_table(index_dir, TABLE, summaries_schema, create=create)
        return None if opened is None else cls(*opened)

    @contextlib.contextmanager
    def failures(self, doing: str = "reading") -> Iterator[None]:
        """LanceDB's errors in the block as an `ArchiveError` naming the table."""
        try:
            yield
        except (OSError, RuntimeError, ValueError) as exc:
            raise _failure(self.path, exc, doing) from exc

    def add(self, summaries: Sequence[Summary]) -> None:
        """Append summaries as one commit.

        Raises:
            ArchiveError: the write failed (disk full, I/O error); nothing is committed.
            ValueError: a summary cites another stream's moments.
        """
        if not summaries:
            return
        import pyarrow as pa

        rows = pa.Table.from_pylist([_to_row(s) for s in summaries], schema=summaries_schema())
        with self.failures("writing"):
            self.lance.add(rows)

    def read(self, where: str | None = None, limit: int | None = None) -> list[Summary]:
        """The summaries matching a SQL filter (the newest `limit`), oldest window first.

        Raises:
            ArchiveError: the table cannot be read.
        """
        with self.failures():
            query = self.lance.search().limit(None)
            if where:
                query = query.where(where)
            rows = query.to_arrow().to_pylist()
        rows.sort(key=lambda row: (row["start_wall"], row["stream"]))
        return [_from_row(row) for row in (rows[-limit:] if limit else rows)]

    def count(self) -> int:
        """How many summaries the table holds."""
        with self.failures():
            return int(self.lance.count_rows())


def overlapping(
    stream: str | None,
    since: float | str | dt.datetime | None,
    until: float | str | dt.datetime | None,
) -> str | None:
    """The SQL filter of the summaries of `stream` (all: None) whose stretch overlaps the span
    `since`..`until` of wall time (epoch seconds, `datetime`, or text as `search` reads it).

    Raises:
        ConfigError: a time that cannot be read, or `since` after `until`.
    """
    from streamer.archive.search import parse_when, sql_string

    now = time.time()
    start, end = parse_when(since, now, "--since"), parse_when(until, now, "--until")
    if start is not None and end is not None and start > end:
        raise ConfigError("--since is after --until: nothing can match")
    parts = [] if stream is None else [f"stream = {sql_string(stream)}"]
    if start is not None:
        parts.append(f"end_wall >= {start!r}")
    if end is not None:
        parts.append(f"start_wall <= {end!r}")
    return " AND ".join(parts) or None


def _failure(path: Path, exc: BaseException, doing: str) -> Exception:
    from streamer.archive.index import index_failure

    return index_failure(path, exc, doing)
