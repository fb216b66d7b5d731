"""Hybrid search over the moments: what a moment looks like, and what was said of it.

A text query runs two searches over the same filtered rows: CLIP's text embedding against the
stored image embeddings (vector similarity), and a full-text search over the captions. An image
query runs the vector search with the picture's embedding. The ranked lists are fused by
reciprocal rank fusion (RRF): each row scores Σ 1 / (60 + rank) over the lists it is in, so a
moment found by both rises, and neither side's scores (a cosine, a BM25 value) need to be
comparable.

The fusion is ours, a dozen lines, rather than LanceDB's `RRFReranker`: we choose how deep
each side is fetched, a side that cannot run drops out instead of failing the query (an
encoder without a text tower, a table with no captions), and each hit keeps its rank on
each side and its cosine similarity, which the results show.

The search needs no pipeline: it takes an `Embedder`, two plain callables (text → vector,
image → vector), so the command line can pass the archive's own encoder.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from streamer.archive.embedder import Embedder
from streamer.archive.index import CAPTION, VECTOR, MomentTable
from streamer.archive.moments import Moment
from streamer.errors import ConfigError

__all__ = ["Hit", "Query", "load_image", "parse_when", "search"]

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009); 60 is the usual
DEPTH = 50  # rows fetched from each side at least: enough overlap for the fusion
NPROBES = 20  # IVF partitions searched once the ANN index exists (bench/archive_search.py)
CANDIDATES = 400  # ... and this many of their nearest re-ranked by the exact vectors

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(
    r"^(\d+(?:\.\d+)?)\s*(s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?)"
    r"\s+ago$"
)


@dataclass(frozen=True)
class Query:
    """A search, checked on construction.

    Attributes:
        text: words to search for (what the moment looks like, or what its caption says).
        image: a picture to search by: a path, or an HxWx3 uint8 RGB array.
        stream: only this stream.
        since, until: only moments seen in this span of wall time: epoch seconds, a
            `datetime`, or text (ISO 8601, "2h ago", "90m ago", "today", "yesterday").
        tag: only moments with this label among their tags (the whole label, in any case).
        k: how many hits.
        now: the time "ago" counts from (epoch seconds; default: the clock).

    Raises:
        ConfigError: no text and no image, a time that cannot be read, `since` after
            `until`, `k` below 1.
    """

    text: str | None = None
    image: str | Path | np.ndarray | None = None
    stream: str | None = None
    since: float | str | dt.datetime | None = None
    until: float | str | dt.datetime | None = None
    tag: str | None = None
    k: int = 10
    now: float | None = None

    def __post_init__(self) -> None:
        text = (self.text or "").strip() or None
        object.__setattr__(self, "text", text)
        if text is None and self.image is None:
            raise ConfigError("a search needs words to look for, or a picture (--image)")
        if isinstance(self.image, str | Path) and not Path(self.image).is_file():
            # now, not after the archive's encoder has loaded (seconds) to embed it
            raise ConfigError(f"--image {self.image}: no such file")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"-k must be an integer ≥ 1, got {self.k!r}")
        now = time.time() if self.now is None else self.now
        since = parse_when(self.since, now, "--since")
        until = parse_when(self.until, now, "--until")
        if since is not None and until is not None and since > until:
            raise ConfigError(
                f"--since ({_iso(since)}) is after --until ({_iso(until)}): nothing can match"
            )
        object.__setattr__(self, "since", since)
        object.__setattr__(self, "until", until)

    def where(self) -> str | None:
        """The filters as a LanceDB SQL predicate, or None."""
        parts = []
        if self.stream is not None:
            parts.append(f"stream = {sql_string(self.stream)}")
        if self.since is not None:
            parts.append(f"wall_time >= {float(self.since)!r}")  # type: ignore[arg-type]
        if self.until is not None:
            parts.append(f"wall_time <= {float(self.until)!r}")  # type: ignore[arg-type]
        if self.tag is not None:  # a whole label, in any case ("Person" finds "person")
            labels = f"concat('{_SEP}', array_to_string(tag_labels, '{_SEP}'), '{_SEP}')"
            pattern = f"%{_SEP}{_like_escaped(self.tag.strip())}{_SEP}%"
            parts.append(f"{labels} ILIKE {sql_string(pattern)} ESCAPE '\\'")
        return " AND ".join(parts) or None


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        moment: the row (its embedding as stored, widened to float32).
        score: the fused RRF score; higher is better.
        similarity: cosine similarity of the query's vector to the moment's, when the vector
            side found it.
        vector_rank, text_rank: its rank (1 = best) on each side that found it.
        media_state: where its media is now (`streamer.archive.media.MediaCheck`): "ok",
            "missing", "moved" or "changed"; None when not checked (`search` alone does not
            know the archive's recordings; `Archive.search` checks every hit).
        media: the file that holds the moment now (the input file, its new place, or a
            recording segment); None when missing or not checked.
        media_offset: seconds into `media` where the moment is.
    """

    moment: Moment
    score: float
    similarity: float | None
    vector_rank: int | None
    text_rank: int | None
    media_state: str | None = None
    media: str | None = None
    media_offset: float | None = None

    def save_thumbnail(self, path: str | Path) -> Path | None:
        """Write the moment's JPEG thumbnail to `path`; None when it has none."""
        if self.moment.thumbnail is None:
            return None
        path = Path(path)
        path.write_bytes(self.moment.thumbnail)
        return path


def search(
    table: MomentTable | None,
    query: Query,
    embedder: Embedder | None,
    *,
    nprobes: int = NPROBES,
    candidates: int = CANDIDATES,
) -> list[Hit]:
    """Run a query: vector and full-text sides over the filtered rows, fused by RRF.

    Args:
        table: the archive's moments (None: an archive with none yet).
        query: what to look for.
        embedder: turns the query's text or picture into a vector; None searches the captions
            only (and refuses an image query).
        nprobes, candidates: with the ANN index, the IVF partitions searched and how many of
            the nearest by the quantized vectors are re-ranked by the exact ones
            (bench/archive_search.py measures the trade-off: at a million rows 300 to 400 give a
            recall@10 of 0.98 to 1.0 where 100 gave 0.77).

    Returns:
        At most `query.k` hits, best first.

    Raises:
        ConfigError: an unknown stream, an unreadable image, an image query with no embedder.
        ArchiveError: the index cannot be read (damaged, an I/O error).
    """
    picture = None if query.image is None else load_image(query.image)
    if table is None:
        if query.stream is not None:
            raise ConfigError(f"unknown stream {query.stream!r}: the archive has no moments yet")
        return []
    if picture is not None and embedder is None:
        raise ConfigError("searching by picture needs the archive's encoder (an Embedder)")
    vectors = [] if picture is None else [embedder.image(picture)]  # type: ignore[union-attr]
    if query.text is not None and embedder is not None and embedder.text is not None:
        vectors.append(embedder.text(query.text))
    where, depth = query.where(), max(DEPTH, 4 * query.k)
    with table.failures("searching"):  # LanceDB only in here: the encoder's errors are its own
        if query.stream is not None:
            check_stream(table, query.stream)
        refine = max(1, -(-candidates // depth))  # LanceDB re-ranks limit × refine rows
        ann = (nprobes, refine) if table.has_vector_index() else None
        sides = [partial(_vector_side, table, vector, where, depth, ann) for vector in vectors]
        if query.text is not None:
            sides.append(partial(_text_side, table, query.text, where, depth))
        return _fuse(table, _run_sides(sides), query.k)


def check_stream(table: MomentTable, stream: str) -> None:
    """Raise ConfigError naming the archive's streams when `stream` is not one of them."""
    if table.count(f"stream = {sql_string(stream)}"):
        return
    column = table.lance.search().select(["stream"]).limit(None).to_arrow()["stream"]
    known = sorted(set(column.to_pylist()))
    shown = ", ".join(known) if known else "none yet"
    raise ConfigError(f"unknown stream {stream!r}; the archive's streams: {shown}")


def load_image(image: str | Path | np.ndarray) -> np.ndarray:
    """A picture to search by, as HxWx3 uint8 RGB.

    Raises:
        ConfigError: the file is missing or not an image, or the array is not HxWx3 uint8.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(f"--image must be HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
        return image
    import cv2  # here: `import streamer.archive` stays light

    path = Path(image)
    if not path.is_file():
        raise ConfigError(f"--image {path}: no such file")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"--image {path}: cannot read it as a picture (JPEG, PNG, ...)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def parse_when(value: float | str | dt.datetime | None, now: float, name: str) -> float | None:
    """A point in time as epoch seconds.

    Args:
        value: epoch seconds, a `datetime` (naive: local time), or text: ISO 8601
            ("2024-05-01T14:30", "2024-05-01 14:30:00+02:00"), "now", "today", "yesterday"
            (their local midnight), or "N s|m|h|d|w ago" ("2h ago", "90 minutes ago").
        now: the time "ago" counts from.
        name: the option, for the message.

    Raises:
        ConfigError: text that is none of these.
    """
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    text = value.strip().lower()
    match = _RELATIVE.match(text)
    if match:
        return now - float(match[1]) * _UNITS[match[2][0]]
    if text == "now":
        return now
    if text in ("today", "yesterday"):
        midnight = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - dt.timedelta(days=text == "yesterday")).timestamp()
    try:
        return dt.datetime.fromisoformat(value.strip()).timestamp()
    except ValueError as exc:
        raise ConfigError(
            f"{name} {value!r} is not a time: give an ISO time (2024-05-01T14:30) or a "
            "relative one (2h ago, 90m ago, today, yesterday)"
        ) from exc


def sql_string(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


_SEP = "\x1f"  # the unit separator, which no label holds, between a moment's labels


def _like_escaped(text: str) -> str:
    r"""`text` matched as itself in a LIKE pattern (escape character \).

    >>> _like_escaped("50%_off")
    '50\\%\\_off'
    """
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --- the two sides and their fusion -------------------------------------------------------------


@dataclass
class _Ranked:
    rows: list[dict[str, Any]]  # best first: "_rowid", "wall_time" and the side's score
    kind: str  # "vector" or "text"


def _run_sides(sides: list[Callable[[], _Ranked]]) -> list[_Ranked]:
    """Run the searches side by side: LanceDB releases the GIL, so two sides take the time of
    the slower one instead of the sum."""
    if len(sides) < 2:
        return [side() for side in sides]
    with ThreadPoolExecutor(len(sides), thread_name_prefix="archive-search") as pool:
        return list(pool.map(lambda side: side(), sides))


def _vector_side(
    table: MomentTable,
    vector: np.ndarray,
    where: str | None,
    depth: int,
    ann: tuple[int, int] | None,
) -> _Ranked:
    builder = table.lance.search(np.asarray(vector, np.float32), vector_column_name=VECTOR)
    builder = builder.distance_type("cosine").limit(depth).with_row_id(True)
    builder = builder.select(["wall_time", "_distance"])  # whole rows only for the hits
    if ann is not None:
        builder = builder.nprobes(ann[0]).refine_factor(ann[1])
    if where:
        builder = builder.where(where, prefilter=True)
    return _Ranked(builder.to_arrow().to_pylist(), "vector")


def _text_side(table: MomentTable, text: str, where: str | None, depth: int) -> _Ranked:
    builder = table.lance.search(text, query_type="fts", fts_columns=CAPTION)
    builder = builder.limit(depth).with_row_id(True).select(["wall_time", "_score"])
    if where:
        builder = builder.where(where, prefilter=True)
    return _Ranked(builder.to_arrow().to_pylist(), "text")


def _fuse(table: MomentTable, lists: Sequence[_Ranked], k: int) -> list[Hit]:
    scores: dict[int, float] = {}
    wall: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    similarity: dict[int, float] = {}
    for ranked in lists:
        for rank, row in enumerate(ranked.rows, 1):
            key = row["_rowid"]
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            wall[key] = row["wall_time"]
            ranks.setdefault(key, {}).setdefault(ranked.kind, rank)
            if ranked.kind == "vector":
                cosine = 1.0 - float(row["_distance"])
                similarity[key] = max(similarity.get(key, -1.0), cosine)
    best = sorted(scores, key=lambda key: (-scores[key], wall[key]))[:k]
    rows = _whole_rows(table, best)
    return [
        Hit(
            moment=row_to_moment(rows[key]),
            score=scores[key],
            similarity=similarity.get(key),
            vector_rank=ranks[key].get("vector"),
            text_rank=ranks[key].get("text"),
        )
        for key in best
    ]


def _whole_rows(table: MomentTable, row_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The hits' rows with every column, by row id (fetched once, for the k best only)."""
    if not row_ids:
        return {}
    rows = table.lance.take_row_ids(row_ids).with_row_id().to_arrow().to_pylist()
    return {row["_rowid"]: row for row in rows}


def row_to_moment(row: dict[str, Any]) -> Moment:
    """A table row (as `pyarrow.Table.to_pylist` gives it) as a `Moment`."""
    labels, scores = row["tag_labels"] or [], row["tag_scores"] or []
    return Moment(
        stream=row["stream"],
        media_time=row["media_time"],
        wall_time=row["wall_time"],
        embedding=np.asarray(row[VECTOR], np.float32),
        tags=tuple(zip(labels, (float(s) for s in scores), strict=False)),
        caption=row["caption"],
        caption_source=row["caption_source"],
        alerts=tuple(row["alerts"] or ()),
        scene_score=float(row["scene_score"] or 0.0),
        thumbnail=row["thumbnail"],
        media_path=row["media_path"],
        media_size=row["media_size"],
        media_mtime=row["media_mtime"],
    )


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds).isoformat(timespec="seconds")
