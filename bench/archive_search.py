"""Search over a large archive index: exact vs ANN speed, ANN recall, bytes per row on disk.

Writes --rows synthetic moments (--dim float16 embeddings drawn around --clusters random
centres, as real embeddings of many cameras' scenes bunch up; stream names, times, tags and a
caption per row; --thumbnail-bytes of incompressible bytes as each row's JPEG) into a fresh
archive index, in the archive's own schema and through its own table class. Then, for
--queries query vectors drawn from the same mixture but not in the table:

- exact top-10 (the vector index bypassed): the ground truth, and the time without the index;
- the ANN index is built (--ann-type, IVF_RQ by default, cosine; `streamer.archive.index`),
  timed;
- ANN top-10 with the query settings of `streamer.archive.search` (--nprobes, --candidates:
  the nearest by the quantized vectors re-ranked exactly);
- recall@10 of ANN against exact, over the same queries;
- the archive's whole hybrid `search()` (vector side, caption side, fusion, rows to hits);
- the same with a stream filter.

Prints a table. Takes minutes at the default million rows and a few GB of disk under --dir.

Run:  python bench/archive_search.py [--rows 1000000] [--dim 512] [--queries 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._entry import run_script  # noqa: E402
from streamer.archive.embedder import Embedder  # noqa: E402
from streamer.archive.index import IndexPolicy, MomentTable, moments_schema  # noqa: E402
from streamer.archive.search import CANDIDATES, NPROBES, Query, search  # noqa: E402
from streamer.archive.store import EncoderSpec  # noqa: E402

STREAMS = 8
WORDS = ("van", "gate", "person", "dog", "car", "door", "truck", "bicycle", "rain", "night")


def mixture(rng: np.random.Generator, centres: np.ndarray, count: int, spread: float):
    """`count` unit vectors, each a random centre plus Gaussian noise of `spread` per axis."""
    picks = rng.integers(0, len(centres), count)
    vectors = centres[picks] + rng.standard_normal((count, centres.shape[1])) * spread
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def synthetic_batch(rng, centres, start: int, count: int, args) -> pa.Table:
    """Rows `start`..`start + count` in the moments schema."""
    dim = centres.shape[1]
    vectors = mixture(rng, centres, count, args.spread).astype(np.float16).ravel()
    index = np.arange(start, start + count)
    words = np.array(WORDS)
    thumbs = (
        [os.urandom(args.thumbnail_bytes) for _ in range(count)]
        if args.thumbnail_bytes
        else [None] * count
    )
    return pa.table(
        {
            "stream": [f"cam{i % STREAMS}" for i in index],
            "media_time": (index // STREAMS * 10.0).tolist(),
            "wall_time": (1.7e9 + index // STREAMS * 10.0).tolist(),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors), dim),
            "tag_labels": [[str(words[i % 10]), str(words[(i // 10) % 10])] for i in index],
            "tag_scores": [[0.6, 0.2]] * count,
            "caption": [f"a {words[i % 10]} near the {words[(i // 7) % 10]}" for i in index],
            "caption_source": ["llm"] * count,
            "alerts": [[]] * count,
            "scene_score": [0.1] * count,
            "thumbnail": thumbs,
            "media_path": [None] * count,
            "media_size": [None] * count,
            "media_mtime": [None] * count,
        },
        schema=moments_schema(dim),
    )


def fill(table: MomentTable, rng, centres, args) -> float:
    started = time.perf_counter()
    for start in range(0, args.rows, args.batch):
        count = min(args.batch, args.rows - start)
        table.lance.add(synthetic_batch(rng, centres, start, count, args))
        print(f"\r  written {start + count:,} rows", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    # One compacted table without the versions before it (no one else reads it), as an
    # archive is once the writer's optimize has run and the old versions have expired.
    with warnings.catch_warnings(action="ignore", category=UserWarning):
        table.lance.optimize(cleanup_older_than=dt.timedelta(0))
    table.maintain(IndexPolicy(ann_rows=args.rows + 1))  # caption and filter indexes
    return time.perf_counter() - started


def top10(table: MomentTable, query: np.ndarray, *, exact: bool, args) -> tuple[list, float]:
    builder = table.lance.search(query, vector_column_name="embedding").distance_type("cosine")
    builder = builder.limit(10).with_row_id(True).select(["_distance"])
    if exact:
        builder = builder.bypass_vector_index()
    else:
        builder = builder.nprobes(args.nprobes).refine_factor(max(1, args.candidates // 10))
    started = time.perf_counter()
    ids = builder.to_arrow()["_rowid"].to_pylist()
    return ids, time.perf_counter() - started


def timed_search(table: MomentTable, queries: np.ndarray, args, **filters) -> list[float]:
    spec = EncoderSpec("synthetic", "mixture", "random", args.dim)
    times = []
    for vector in queries:
        embedder = Embedder(image=lambda _, v=vector: v, text=lambda _, v=vector: v, spec=spec)
        started = time.perf_counter()
        search(table, Query(text="a van near the gate", k=10, **filters), embedder,
               nprobes=args.nprobes, candidates=args.candidates)  # fmt: skip
        times.append(time.perf_counter() - started)
    return times


def ms(times: list[float]) -> str:
    cuts = statistics.quantiles(times, n=20) if len(times) > 1 else times * 19
    return f"{statistics.median(times) * 1e3:8.1f} {cuts[18] * 1e3:8.1f}"


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(args, folder: Path) -> None:
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    kept = MomentTable.open(folder, args.dim, create=False)
    table = kept or MomentTable.open(folder, args.dim, create=True)
    write_s = 0.0 if kept else fill(table, rng, centres, args)
    data_bytes = disk_bytes(folder)
    # The same seed draws the same centres, so a kept table's queries come from its mixture.
    queries = mixture(rng, centres, args.queries, args.spread)
    top10(table, queries[0], exact=True, args=args)  # a first query warms the caches
    exact = [top10(table, q, exact=True, args=args) for q in queries]
    started = time.perf_counter()
    if not table.has_vector_index():
        policy = IndexPolicy(ann_type=args.ann_type, ann_partitions=args.partitions,
                             ann_sub_vectors=args.sub_vectors)  # fmt: skip
        table.create_vector_index(policy)
    build_s = time.perf_counter() - started
    for setting in filter(None, args.sweep.split(",")):
        nprobes, candidates = map(int, setting.split("x"))
        swept = argparse.Namespace(**{**vars(args), "nprobes": nprobes, "candidates": candidates})
        top10(table, queries[0], exact=False, args=swept)
        ann = [top10(table, q, exact=False, args=swept) for q in queries]
        print(f"sweep nprobes {nprobes:>4} candidates {candidates:>5}: ANN p50/p95 ms "
              f"{ms([t for _, t in ann])}, recall@10 {_recall(ann, exact):.3f}")  # fmt: skip
    top10(table, queries[0], exact=False, args=args)
    ann = [top10(table, q, exact=False, args=args) for q in queries]
    recall = _recall(ann, exact)
    hybrid = timed_search(table, queries, args)
    filtered = timed_search(table, queries, args, stream="cam3")
    index_bytes = disk_bytes(folder) - data_bytes
    _report(args, write_s, build_s, data_bytes, index_bytes, exact, ann, recall, hybrid, filtered)


def _recall(ann: list, exact: list) -> float:
    """Mean share of the exact top-10 that the ANN top-10 found."""
    return float(
        np.mean([len(set(a) & set(e)) / 10 for (a, _), (e, _) in zip(ann, exact, strict=True)])
    )


def _report(args, write_s, build_s, data_bytes, index_bytes, exact, ann, recall, hybrid, filtered):
    print(f"\n{args.rows:,} rows, {args.dim}-d float16, {args.clusters} clusters, "
          f"thumbnails {args.thumbnail_bytes} B; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; {args.ann_type} partitions {args.partitions or 'auto'}, "
          f"sub-vectors {args.sub_vectors or 'auto'}; nprobes {args.nprobes}, "
          f"candidates {args.candidates}")  # fmt: skip
    if write_s == 0:  # a kept table: nothing was written or built this run
        print(f"reused the table under --keep: {(data_bytes + index_bytes) / args.rows:,.0f} "
              "bytes/row on disk, indexes included")  # fmt: skip
    else:
        print(f"write {write_s:.1f} s ({args.rows / write_s:,.0f} rows/s, with the caption and "
              f"filter indexes), ANN build {build_s:.1f} s")  # fmt: skip
        print(f"disk: {data_bytes / args.rows:,.0f} bytes/row in the table and its caption and "
              f"filter indexes (vectors {args.dim * 2} B), ANN index "
              f"{index_bytes / args.rows:,.0f} bytes/row")  # fmt: skip
    print("\n| top-10 search | p50 ms | p95 ms |\n|---|---:|---:|")
    rows = [("exact (no index)", [t for _, t in exact]), ("ANN", [t for _, t in ann]),
            ("hybrid search() with ANN", hybrid), ("hybrid, stream filter", filtered)]  # fmt: skip
    for label, times in rows:
        p50, p95 = ms(times).split()
        print(f"| {label} | {p50} | {p95} |")
    print(f"\nrecall@10 of ANN against exact: {recall:.3f} ({args.queries} queries)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=0.03, help="noise per axis")
    parser.add_argument("--thumbnail-bytes", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50_000, help="rows per commit")
    parser.add_argument("--ann-type", default=IndexPolicy.ann_type, help="IVF_RQ | IVF_SQ | IVF_PQ")
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--sub-vectors", type=int, default=None)
    parser.add_argument("--nprobes", type=int, default=NPROBES)
    parser.add_argument("--candidates", type=int, default=CANDIDATES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="where (default: a temp dir)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the table here and keep it; a later run with the same "
                        "--keep and --seed reuses it (no writing, no index build)")  # fmt: skip
    parser.add_argument(
        "--sweep", default="", help="NPROBESxCANDIDATES,... ANN settings to compare"
    )
    args = parser.parse_args()
    if args.keep is not None:
        run(args, args.keep)
        return
    folder = Path(tempfile.mkdtemp(prefix="archive-bench-", dir=args.dir))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    run_script(main)
