"""`Archive`: the Python API of an archive directory (search, ask, summaries, info, pruning).

    >>> from streamer.archive import Archive
    >>> with Archive("cams-archive") as archive:              # doctest: +SKIP
    ...     for hit in archive.search("a red van at the gate", since="2h ago", k=5):
    ...         print(hit.moment.stream, hit.moment.wall_time, hit.moment.caption)
    ...     answer = archive.ask("when did the delivery van arrive?", llm=LlmConfig())
    ...     print(answer.render())

A later step of issue 14 adds `clip` (cutting a moment's clip from the recordings,
`streamer.archive.clips`) on this class.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.archive.embedder import Embedder
from streamer.archive.index import IndexPolicy, MomentTable
from streamer.archive.media import MediaCheck, MediaChecker
from streamer.archive.search import Hit, Query, search, sql_string
from streamer.archive.store import (
    INDEX_DIR,
    RECORDINGS_DIR,
    ArchiveMeta,
    EncoderSpec,
    WriterLock,
    open_for_writing,
    read_meta,
)
from streamer.archive.summaries import Summary, SummaryTable, overlapping
from streamer.archive.writer import MomentWriter, WriterPolicy
from streamer.errors import ArchiveError

if TYPE_CHECKING:
    from streamer.archive.ask import Answer
    from streamer.llm import LlmClient, LlmConfig

__all__ = ["Archive", "ArchiveInfo", "StreamInfo"]

log = logging.getLogger("streamer.archive")


@dataclass(frozen=True)
class StreamInfo:
    """One stream's moments in the index.

    Attributes:
        stream: its name.
        rows: moments indexed.
        first_wall, last_wall: the span of wall time they cover (epoch seconds).
        first_media, last_media: the span of media time (seconds in the stream).
    """

    stream: str
    rows: int
    first_wall: float
    last_wall: float
    first_media: float
    last_media: float


@dataclass(frozen=True)
class ArchiveInfo:
    """What an archive holds.

    Attributes:
        root: the archive directory.
        meta: its `archive.json`.
        rows: moments indexed, all streams.
        streams: per stream, by name.
        index_bytes, recordings_bytes: disk use of `index/` and `recordings/`.
        oldest, newest: wall time of the first and last moment (None when empty).
        vector_index: whether the ANN index exists (else search is exact).
    """

    root: Path
    meta: ArchiveMeta
    rows: int
    streams: tuple[StreamInfo, ...]
    index_bytes: int
    recordings_bytes: int
    oldest: float | None
    newest: float | None
    vector_index: bool


class Archive:
    """An archive directory, opened for reading (`Archive(path)`) or writing
    (`Archive.create(path, encoder)`).

    Reading takes no lock and sees what the writer has committed (within a second). Writing
    holds the archive's single-writer lock until `close`.

    Args:
        path: the archive directory.
        embedder: turns query text and pictures into vectors; must be the archive's encoder.
            None: loaded from `archive.json` at the first search that needs it.
        device: where that encoder runs, when it is loaded here (None: CUDA when present).
        export_cache: where runs keep encoder exports (`encoders.open_export`): the encoder
            loaded here opens one a run left, else is built on torch (None: always built).

    Raises:
        ArchiveError: `path` is not a readable archive (missing, newer format, damaged).
        ConfigError: `embedder` is another encoder than the archive's.
    """

    def __init__(
        self, path: str | Path, *, embedder: Embedder | None = None, device: str | None = None,
        export_cache: str | Path | None = None,
    ) -> None:  # fmt: skip
        self.root = Path(path)
        self.meta = read_meta(self.root)
        if embedder is not None:
            self.meta.encoder.check_same(embedder.spec, self.root)
        self._embedder = embedder
        self._device, self._export_cache = device, export_cache
        self._lock: WriterLock | None = None
        self._table: MomentTable | None = None
        self._summaries: SummaryTable | None = None
        self._writer: MomentWriter | None = None

    @classmethod
    def create(
        cls, path: str | Path, encoder: EncoderSpec, *, embedder: Embedder | None = None
    ) -> Archive:
        """Open an archive for writing, creating it when `path` is new or empty.

        Raises:
            ArchiveError: `path` cannot be an archive, another run is writing it, or its index
                cannot be opened (damaged); the lock is let go then.
            ConfigError: the archive holds another encoder's embeddings.
        """
        _, lock = open_for_writing(path, encoder)
        try:
            archive = cls(path, embedder=embedder)
            archive._lock = lock
            # A damaged index is refused now, before a run does any work (a new one is made
            # by the writer, when there is something to write).
            archive._table = MomentTable.open(archive.index_dir, archive.meta.encoder.dim)
            if archive._table is not None:
                archive._table.check_readable()
            archive._repair_recordings()
        except BaseException:
            lock.release()
            raise
        return archive

    def _repair_recordings(self) -> None:
        """Close in the catalogues what a run killed mid-segment left open (its files play to
        their last fragment), for every stream no process records now: the run that opens the
        archive next repairs it, whichever streams it records."""
        from streamer.archive._segments import repair_idle

        try:
            repair_idle(self.root)
        except OSError as exc:  # reading still works: a cut segment ends at its last write
            log.warning("archive %s: cannot repair the recordings' catalogues: %s", self.root, exc)

    @property
    def index_dir(self) -> Path:
        """The LanceDB database."""
        return self.root / INDEX_DIR

    @property
    def recordings_dir(self) -> Path:
        """The recordings of live streams."""
        return self.root / RECORDINGS_DIR

    @property
    def writable(self) -> bool:
        """Whether this archive holds the writer lock."""
        return self._lock is not None and self._lock.held

    def table(self) -> MomentTable | None:
        """The moments table (None: nothing indexed yet). A writer creates it."""
        if self._table is None:
            self._table = MomentTable.open(
                self.index_dir, self.meta.encoder.dim, create=self.writable
            )
        return self._table

    def writer(
        self, policy: WriterPolicy | None = None, index_policy: IndexPolicy | None = None
    ) -> MomentWriter:
        """The background writer of moments (one per archive; closed by `close`).

        Raises:
            ArchiveError: the archive was opened for reading (`Archive(path)`).
        """
        if not self.writable:
            raise ArchiveError(
                f"archive {self.root} was opened for reading; Archive.create() opens it for writing"
            )
        if self._writer is None:
            table = self.table()
            assert table is not None  # a writer creates it
            self._writer = MomentWriter(table, policy, index_policy)
        return self._writer

    @property
    def embedder(self) -> Embedder:
        """The archive's encoder as an `Embedder`, loaded on first use (takes seconds)."""
        if self._embedder is None:
            self._embedder = Embedder.load(
                self.meta.encoder, self.root, self._device, self._export_cache
            )
        return self._embedder

    def search(
        self,
        text: str | None = None,
        *,
        image: str | Path | np.ndarray | None = None,
        stream: str | None = None,
        since: float | str | dt.datetime | None = None,
        until: float | str | dt.datetime | None = None,
        tag: str | None = None,
        k: int = 10,
    ) -> list[Hit]:
        """The best moments for words and/or a picture (see `streamer.archive.search`).

        Args:
            text: words: what the moment looks like, or what its caption says.
            image: a picture (path or HxWx3 uint8 RGB array) to find look-alikes of.
            stream: only this stream.
            since, until: a span of wall time: epoch seconds, `datetime`, ISO text, "2h ago".
            tag: only moments tagged with this label.
            k: how many hits.

        Returns:
            Hits, best first, each saying where its media is now (`Hit.media_state`: a file
            moved or changed since it was indexed, a recording pruned or cut short).

        Raises:
            ConfigError: a bad query (empty, unreadable image, `since` after `until`, an
                unknown stream).
            ArchiveError: the index cannot be read.
        """
        query = Query(text, image, stream, since, until, tag, k)
        table = self.table()
        hits = search(table, query, self.embedder if table is not None else self._embedder)
        media = MediaChecker(self.root)
        return [_with_media(hit, media.check(hit.moment)) for hit in hits]

    def ask(
        self,
        question: str,
        *,
        llm: LlmConfig | None = None,
        k: int = 8,
        stream: str | None = None,
        since: float | str | dt.datetime | None = None,
        until: float | str | dt.datetime | None = None,
    ) -> Answer:
        """Answer a question from the best moments (hybrid search) and the summaries around
        them, the LLM citing the moments (`streamer.archive.ask`); `llm=None` asks no LLM.

        Returns:
            The `Answer`: its `text` None, and `error` saying why, when the LLM gave none.

        Raises:
            ConfigError: an empty question or a bad filter (as `search`).
            ArchiveError: the index cannot be read.
        """
        from streamer.archive.ask import ask

        return ask(self, question, llm=llm, k=k, stream=stream, since=since, until=until)

    async def ask_async(
        self,
        question: str,
        *,
        llm: LlmConfig | None = None,
        client: LlmClient | None = None,
        k: int = 8,
        stream: str | None = None,
        since: float | str | dt.datetime | None = None,
        until: float | str | dt.datetime | None = None,
    ) -> Answer:
        """`ask` for an event loop (the web viewer): retrieval runs on a thread, the LLM
        request on the loop, through `client` when given (a running viewer's own)."""
        from streamer.archive.ask import ask_async

        return await ask_async(self, question, llm=llm, client=client, k=k, stream=stream,
                               since=since, until=until)  # fmt: skip

    def summaries(
        self,
        *,
        stream: str | None = None,
        since: float | str | dt.datetime | None = None,
        until: float | str | dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Summary]:
        """The LLM's summaries (`--summary-every`, `--summary`), oldest first.

        Args:
            stream: only this stream's.
            since, until: only those whose stretch overlaps this span of wall time (as for
                `search`).
            limit: only the newest this many.

        Raises:
            ConfigError: a time that cannot be read.
            ArchiveError: the summaries cannot be read.
        """
        table = self._summary_table()
        if table is None:
            return []
        return table.read(overlapping(stream, since, until), limit)

    def add_summaries(self, summaries: list[Summary]) -> None:
        """Store summaries (one commit). Blocking.

        Raises:
            ArchiveError: the archive was opened for reading, or the write failed.
        """
        if not self.writable:
            raise ArchiveError(
                f"archive {self.root} was opened for reading; Archive.create() opens it for writing"
            )
        table = self._summary_table()
        assert table is not None  # a writer creates it
        table.add(summaries)

    def _summary_table(self) -> SummaryTable | None:
        if self._summaries is None:
            self._summaries = SummaryTable.open(self.index_dir, create=self.writable)
        return self._summaries

    def clip(self, hit: Hit, out: str | Path, *, before: float = 5.0, after: float = 10.0) -> Any:
        """A clip around a search hit (`streamer.archive.clips.clip_of_hit`): a `ClipResult`."""
        from streamer.archive.clips import clip_of_hit

        return clip_of_hit(self.root, hit, out, before=before, after=after)

    def info(self) -> ArchiveInfo:
        """Streams, time spans, rows and disk use.

        Raises:
            ArchiveError: the index cannot be read.
        """
        table = self.table()
        streams: tuple[StreamInfo, ...] = ()
        vector_index = False
        if table is not None:
            with table.failures():
                streams = _stream_infos(table) if table.count() else ()
                vector_index = table.has_vector_index()
        return ArchiveInfo(
            root=self.root,
            meta=self.meta,
            rows=sum(s.rows for s in streams),
            streams=streams,
            index_bytes=_disk_use(self.index_dir),
            recordings_bytes=_disk_use(self.recordings_dir),
            oldest=min((s.first_wall for s in streams), default=None),
            newest=max((s.last_wall for s in streams), default=None),
            vector_index=vector_index,
        )

    def prune_index(
        self, before_wall: float, stream: str | None = None, media_path: str | None = None
    ) -> int:
        """Delete moments seen before `before_wall` (of one stream or all, of one input file
        or any). Blocking. Takes the writer lock while it runs unless this archive holds it.

        Returns:
            How many moments went.

        Raises:
            ArchiveError: another run is writing the archive, or the index cannot be written.
        """
        where = f"wall_time < {float(before_wall)!r}"
        if stream is not None:
            where += f" AND stream = {sql_string(stream)}"
        if media_path is not None:
            where += f" AND media_path = {sql_string(media_path)}"
        if self.writable:
            return self._delete(where)
        with WriterLock(self.root):
            return self._delete(where)

    def close(self) -> None:
        """Finish the writer (if any) and let the lock go (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _delete(self, where: str) -> int:
        table = self.table()
        if table is None:
            return 0
        with table.failures("pruning"):
            return table.delete(where)


def _with_media(hit: Hit, check: MediaCheck) -> Hit:
    return replace(hit, media_state=check.state, media=check.path, media_offset=check.offset)


def _stream_infos(table: MomentTable) -> tuple[StreamInfo, ...]:
    columns = ["stream", "wall_time", "media_time"]
    data = table.lance.search().select(columns).limit(None).to_arrow()
    grouped = data.group_by("stream").aggregate(
        [("wall_time", "min"), ("wall_time", "max"), ("media_time", "min"),
         ("media_time", "max"), ("stream", "count")]
    )  # fmt: skip
    rows: list[dict[str, Any]] = grouped.to_pylist()
    return tuple(
        StreamInfo(
            stream=r["stream"],
            rows=r["stream_count"],
            first_wall=r["wall_time_min"],
            last_wall=r["wall_time_max"],
            first_media=r["media_time_min"],
            last_media=r["media_time_max"],
        )
        for r in sorted(rows, key=lambda r: r["stream"])
    )


def _disk_use(folder: Path) -> int:
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:  # removed while we walk (a segment pruned, a version cleaned)
                continue
    return total
