"""The archive's index of moments: one LanceDB table, `DIR/index/moments.lance`.

Every row is a `Moment`. The embedding is stored as float16 in a fixed-size list (half the
bytes of float32; cosine similarities change in the fourth decimal, and Lance searches float16
vectors natively). Tags are two parallel lists, `tag_labels` and `tag_scores`, so a filter can
ask `array_has(tag_labels, 'car')`.

Each `add` is one LanceDB commit: a new version of the table, written beside the old one and
made current by writing its manifest last. A writer killed mid-batch leaves files no manifest
names, so the table reopens at the last committed batch (tests/streamer/archive/test_index.py
kills one to see it).

Indexes, built by `MomentTable.maintain` off the writer's path (`streamer.archive.writer`):
a full-text index on captions (LanceDB's native FTS; rows added after it are still searched,
by a scan, until the next `optimize` folds them in), scalar indexes on what search filters by
(stream, wall time, tag labels) and, once the table has `ann_rows` rows,
a vector index (IVF_RQ by default; bench/archive_search.py measures its speed and recall).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from streamer.archive.moments import Moment
from streamer.errors import ArchiveError

__all__ = [
    "ANN_ROWS",
    "IndexPolicy",
    "MomentTable",
    "index_failure",
    "lance_message",
    "moments_schema",
    "moments_to_arrow",
]

log = logging.getLogger("streamer.archive")

TABLE = "moments"
_ANN_TYPES = {"IVF_RQ": "IvfRq", "IVF_SQ": "IvfSq", "IVF_PQ": "IvfPq"}  # → lancedb.index
ANN_ROWS = 100_000  # below this, exact search over float16 vectors is fast enough
VECTOR = "embedding"
_ANN_NAME = re.compile(VECTOR + r"_ann_(\d+)")  # the index is named with its rows at build
CAPTION = "caption"


@dataclass(frozen=True)
class IndexPolicy:
    """When the table's indexes are made and refreshed.

    Attributes:
        ann_rows: rows at which the vector (ANN) index is built; below, search is exact.
        ann_regrow: the index is built again, with partitions for the new size, once the
            table holds this many times the rows it was built on (`optimize` adds new rows
            to the old partitions, which then grow and slow every query).
        ann_type: "IVF_RQ" (RaBitQ: 1 bit a dimension), "IVF_SQ" (8 bits a dimension) or
            "IVF_PQ" (product quantization); queries re-rank their candidates by the stored
            vectors either way. IVF_RQ by default: on float16 vectors it builds as fast as
            IVF_SQ, searches faster with the same recall, and IVF_PQ's training is about 8×
            slower on float16 than on float32 (measured with bench/archive_search.py).
        ann_partitions: IVF partitions (None: LanceDB's choice, about rows / 8192).
        ann_sub_vectors: PQ sub-vectors, IVF_PQ only (None: LanceDB's choice, dim / 16).
        optimize_every: batches between two `optimize` runs (compaction of the small
            files each batch writes, and folding new rows into the indexes); LanceDB advises
            one per about 20 modifications.
        keep_versions_s: old table versions younger than this are kept by `optimize`, so a
            reader (a search in another process) never loses the files of the version it
            reads.
    """

    ann_rows: int = ANN_ROWS
    ann_regrow: float = 4.0
    ann_type: str = "IVF_RQ"
    ann_partitions: int | None = None
    ann_sub_vectors: int | None = None
    optimize_every: int = 20
    keep_versions_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.ann_type not in _ANN_TYPES:
            raise ValueError(
                f"ann_type must be one of {', '.join(_ANN_TYPES)}, got {self.ann_type!r}"
            )
        if not self.ann_regrow > 1:
            raise ValueError(f"ann_regrow must be > 1, got {self.ann_regrow}")
        for name in ("ann_rows", "optimize_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")


def moments_schema(dim: int) -> pa.Schema:
    """The table's Arrow schema for embeddings of `dim` values."""
    return pa.schema(
        [
            pa.field("stream", pa.string(), nullable=False),
            pa.field("media_time", pa.float64(), nullable=False),
            pa.field("wall_time", pa.float64(), nullable=False),
            pa.field(VECTOR, pa.list_(pa.float16(), dim), nullable=False),
            pa.field("tag_labels", pa.list_(pa.string())),
            pa.field("tag_scores", pa.list_(pa.float32())),
            pa.field(CAPTION, pa.string()),
            pa.field("caption_source", pa.string()),
            pa.field("alerts", pa.list_(pa.string())),
            pa.field("scene_score", pa.float32()),
            pa.field("thumbnail", pa.binary()),
            pa.field("media_path", pa.string()),
            pa.field("media_size", pa.int64()),
            pa.field("media_mtime", pa.float64()),
        ]
    )


def moments_to_arrow(moments: Sequence[Moment], dim: int) -> pa.Table:
    """Moments as an Arrow table of `moments_schema(dim)`.

    Raises:
        ValueError: a moment's embedding does not have `dim` values.
    """
    wrong = next((m for m in moments if m.embedding.shape != (dim,)), None)
    if wrong is not None:
        raise ValueError(f"embeddings must have {dim} values, got {wrong.embedding.shape}")
    vectors = np.stack([m.embedding for m in moments]).astype(np.float16).ravel()
    columns: dict[str, Any] = {
        "stream": [m.stream for m in moments],
        "media_time": [float(m.media_time) for m in moments],
        "wall_time": [float(m.wall_time) for m in moments],
        VECTOR: pa.FixedSizeListArray.from_arrays(pa.array(vectors), dim),
        "tag_labels": [[label for label, _ in m.tags] for m in moments],
        "tag_scores": [[float(score) for _, score in m.tags] for m in moments],
        CAPTION: [m.caption for m in moments],
        "caption_source": [m.caption_source for m in moments],
        "alerts": [list(m.alerts) for m in moments],
        "scene_score": [float(m.scene_score) for m in moments],
        "thumbnail": [m.thumbnail for m in moments],
        "media_path": [m.media_path for m in moments],
        "media_size": [m.media_size for m in moments],
        "media_mtime": [m.media_mtime for m in moments],
    }
    return pa.table(columns, schema=moments_schema(dim))


class MomentTable:
    """The moments table of one archive.

    Use `MomentTable.open`. Reading needs no lock; adding, deleting and `maintain` belong to
    the archive's one writer (`streamer.archive.store.WriterLock`).

    Attributes:
        lance: the LanceDB table (for queries: `streamer.archive.search`).
        dim: length of the embedding vectors.
        path: the table's directory, for messages.
    """

    def __init__(self, lance: Any, dim: int, path: Path) -> None:
        self.lance = lance
        self.dim = dim
        self.path = path
        self._indexed: set[str] = set()

    @classmethod
    def open(cls, index_dir: str | Path, dim: int, *, create: bool = False) -> MomentTable | None:
        """Open the table in the LanceDB database at `index_dir`.

        Args:
            index_dir: the archive's `index/` directory.
            dim: the archive's embedding length; the table's must be the same.
            create: make an empty table when there is none.

        Returns:
            The table, or None when there is none and `create` is false (an archive that has
            no moments yet).

        Raises:
            ArchiveError: the table cannot be opened (damaged, unreadable) or its embeddings
                are not `dim` long.
        """
        opened = open_lance_table(index_dir, TABLE, lambda: moments_schema(dim), create=create)
        if opened is None:
            return None
        lance, path = opened
        try:
            stored = lance.schema.field(VECTOR).type.list_size
        except Exception as exc:  # a damaged manifest
            raise index_failure(path, exc, "opening") from exc
        if stored != dim:
            raise ArchiveError(
                f"the index {path} holds {stored}-d embeddings but archive.json says {dim}: "
                "the archive's metadata and index disagree; restore archive.json"
            )
        return cls(lance, dim, path)

    def check_readable(self) -> None:
        """Read one small column of every row: a data file cut short (its end, where Lance
        keeps what it holds, missing) fails here, not at the first search after a run that
        wrote beside it and said all was well. About 45 ms for 120,000 rows.

        Raises:
            ArchiveError: naming the index, what failed and the fix.
        """
        with self.failures("opening"):
            rows = self.lance.count_rows()
            if rows:
                self.lance.search().select(["wall_time"]).limit(rows).to_arrow()

    @contextlib.contextmanager
    def failures(self, doing: str = "reading") -> Iterator[None]:
        """Turn LanceDB's errors in the block (a damaged file, an I/O error) into an
        `ArchiveError` naming the index; the block must call nothing but LanceDB.

        Args:
            doing: what the block does, for the message ("reading", "pruning").
        """
        try:
            yield
        except (OSError, RuntimeError) as exc:  # what LanceDB raises for I/O and bad data
            raise index_failure(self.path, exc, doing) from exc

    def add(self, moments: Sequence[Moment]) -> None:
        """Append moments as one commit (one new version of the table).

        Raises:
            OSError, RuntimeError: the write failed (disk full, I/O error); nothing of the
                batch is committed.
        """
        if moments:
            self.lance.add(moments_to_arrow(moments, self.dim))

    def count(self, where: str | None = None) -> int:
        """Rows, all or those matching a SQL filter."""
        return int(self.lance.count_rows(where))

    def delete(self, where: str) -> int:
        """Delete the rows matching a SQL filter; returns how many went."""
        before = self.count()
        self.lance.delete(where)
        return before - self.count()

    def has_vector_index(self) -> bool:
        """Whether the ANN index exists (queries then tune nprobes and refinement)."""
        return self._has_index(VECTOR)

    def maintain(self, policy: IndexPolicy, *, optimize: bool = False) -> list[str]:
        """Make the indexes that are due, and optimize when asked. Slow: off the hot path.

        Returns:
            What was done, for the log: "fts", "filters", "ann", "optimize".
        """
        done = []
        rows = self.count()
        if rows and not self._has_index(CAPTION):
            self._create_fts()
            done.append("fts")
        if rows and not self._has_index("stream"):
            self._create_filter_indexes()
            done.append("filters")
        built = self.vector_index_rows()
        if rows >= policy.ann_rows and (built is None or rows >= policy.ann_regrow * built):
            self.create_vector_index(policy, rows)
            done.append("ann")
        if optimize:
            self.lance.optimize(cleanup_older_than=dt.timedelta(seconds=policy.keep_versions_s))
            done.append("optimize")
        return done

    def create_vector_index(self, policy: IndexPolicy, rows: int | None = None) -> None:
        """Build the ANN index on the embeddings (cosine distance), then drop older ones.

        Args:
            policy: its kind and partitions.
            rows: the table's rows now (counted when None), kept in the index's name so a
                later `maintain` knows when the table has outgrown it.
        """
        from lancedb import index

        rows = self.count() if rows is None else rows
        kind = getattr(index, _ANN_TYPES[policy.ann_type])
        options = {"distance_type": "cosine", "num_partitions": policy.ann_partitions}
        if policy.ann_type == "IVF_PQ":
            options["num_sub_vectors"] = policy.ann_sub_vectors
        name = f"{VECTOR}_ann_{rows}"
        older = [i.name for i in self.lance.list_indices() if i.columns == [VECTOR]]
        self.lance.create_index(VECTOR, config=kind(**options), name=name, replace=True)
        for stale in older:  # searches used the old one until the new one was committed
            if stale != name:
                self.lance.drop_index(stale)
        self._indexed.add(VECTOR)

    def vector_index_rows(self) -> int | None:
        """Rows the ANN index was built on (None: there is none; 1: unknown)."""
        for config in self.lance.list_indices():
            if config.columns == [VECTOR]:
                match = _ANN_NAME.fullmatch(config.name)
                return int(match[1]) if match else 1
        return None

    def _create_fts(self) -> None:
        from lancedb.index import FTS

        # English stemming: "vans" finds "van"; stop words are left out of the ranking.
        self.lance.create_index(CAPTION, config=FTS(), replace=True)
        self._indexed.add(CAPTION)

    def _create_filter_indexes(self) -> None:
        from lancedb.index import Bitmap, BTree, LabelList

        # What the search filters on: without these, every filtered query scans the column.
        # Cheap to build (a fraction of a second at 200k rows); `optimize` keeps them current.
        self.lance.create_index("wall_time", config=BTree(), replace=True)
        self.lance.create_index("tag_labels", config=LabelList(), replace=True)
        self.lance.create_index("stream", config=Bitmap(), replace=True)  # last: the marker
        self._indexed.add("stream")

    def _has_index(self, column: str) -> bool:
        if column not in self._indexed and any(
            column in index.columns for index in self.lance.list_indices()
        ):
            self._indexed.add(column)
        return column in self._indexed


def lance_message(exc: BaseException) -> str:
    """An error's text without the Rust source locations LanceDB appends."""
    return _RUST_LOCATION.sub("", str(exc)).strip()


_RUST_LOCATION = re.compile(r",?\s*/\S+\.rs:\d+:\d+")


def open_lance_table(
    index_dir: str | Path, name: str, schema: Callable[[], Any], *, create: bool
) -> tuple[Any, Path] | None:
    """The LanceDB table `name` in the database at `index_dir`, and its directory.

    Args:
        schema: the table's schema, asked for only when the table is made.
        create: make the table (empty) when there is none.

    Returns:
        None when there is no such table and `create` is false.

    Raises:
        ArchiveError: the table cannot be opened or made (damaged, unreadable, disk full).
    """
    import lancedb  # here: `import streamer.archive` stays light

    index_dir = Path(index_dir)
    path = index_dir / f"{name}.lance"
    if not path.exists() and not create:
        return None
    try:
        # A reader in a long-lived process (the viewer) sees the writer's new commits.
        db = lancedb.connect(index_dir, read_consistency_interval=dt.timedelta(seconds=1))
        if path.exists():
            return db.open_table(name), path
        return db.create_table(name, schema=schema(), exist_ok=True), path
    except Exception as exc:  # LanceDB raises OSError, ValueError or its Rust errors
        raise index_failure(path, exc, "opening") from exc


def index_failure(path: Path, exc: BaseException, doing: str = "reading") -> ArchiveError:
    """The error for a LanceDB failure while `doing` something with the index at `path`."""
    return ArchiveError(
        f"{doing} the archive's index {path} failed: {lance_message(exc)}. Unless the disk is "
        "full, the index may be damaged; nothing was changed: move the archive aside and "
        "start a new one, or restore it from a backup"
    )
