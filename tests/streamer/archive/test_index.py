"""The moments table and its writer: rows as written, batching, a slow or failing disk, a
writer killed mid-batch, and the indexes the writer makes off its path."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import random_moments, unit

from streamer.archive.index import IndexPolicy, MomentTable, moments_to_arrow
from streamer.archive.moments import Moment
from streamer.archive.search import row_to_moment
from streamer.archive.writer import MomentWriter, WriterPolicy
from streamer.errors import ArchiveError

DIM = 32
REPO = Path(__file__).resolve().parents[3]


def new_table(tmp_path: Path, dim: int = DIM) -> MomentTable:
    table = MomentTable.open(tmp_path / "index", dim, create=True)
    assert table is not None
    return table


def all_rows(table: MomentTable) -> list[Moment]:
    rows = table.lance.search().limit(None).to_arrow().to_pylist()
    return sorted((row_to_moment(row) for row in rows), key=lambda m: (m.stream, m.media_time))


def test_a_moment_reads_back_as_written_with_a_float16_embedding(tmp_path):
    table = new_table(tmp_path)
    vector = unit(np.random.default_rng(1).standard_normal(DIM))
    written = Moment(
        stream="gate", media_time=12.5, wall_time=1.7e9 + 0.25, embedding=vector,
        tags=(("a van", 0.61), ("a gate", 0.2)), caption="A white van stops at the gate.",
        caption_source="llm", alerts=("van",), scene_score=0.42, thumbnail=b"\xff\xd8jpeg",
        media_path="/videos/day.mp4", media_size=123_456, media_mtime=1.6e9,
    )  # fmt: skip
    bare = Moment("door", 0.0, 1.7e9, vector)
    table.add([written, bare])
    assert table.lance.schema.field("embedding").type.value_type == "halffloat"
    got, got_bare = all_rows(table)[1], all_rows(table)[0]
    for name in ("stream", "media_time", "wall_time", "caption", "caption_source", "alerts",
                 "thumbnail", "media_path", "media_size", "media_mtime"):  # fmt: skip
        assert getattr(got, name) == getattr(written, name), name
    assert [label for label, _ in got.tags] == ["a van", "a gate"]
    assert [score for _, score in got.tags] == pytest.approx([0.61, 0.2], abs=1e-6)
    assert got.scene_score == pytest.approx(0.42, abs=1e-6)
    assert np.abs(got.embedding - vector).max() < 1e-3  # float16: about 3 decimal digits
    assert got_bare.tags == () and got_bare.caption is None and got_bare.thumbnail is None


def test_an_embedding_of_the_wrong_length_is_refused_at_once(tmp_path):
    table = new_table(tmp_path)
    wrong = Moment("cam", 0.0, 0.0, np.ones(DIM + 1, np.float32))
    with pytest.raises(ValueError, match=f"must have {DIM} values"):
        moments_to_arrow([wrong], DIM)
    with MomentWriter(table) as writer, pytest.raises(ValueError, match=f"must have {DIM}"):
        writer.put(wrong)


def test_a_reader_finds_no_table_in_an_archive_with_no_moments(tmp_path):
    assert MomentTable.open(tmp_path / "index", DIM) is None
    new_table(tmp_path)
    with pytest.raises(ArchiveError, match=r"holds 32-d embeddings but archive\.json says 64"):
        MomentTable.open(tmp_path / "index", 64)


# --- batching ------------------------------------------------------------------------------------


def test_the_writer_writes_full_batches_as_soon_as_they_are_there(tmp_path):
    table = new_table(tmp_path)
    writer = MomentWriter(table, WriterPolicy(batch_rows=10, flush_s=3600))
    for moment in random_moments(25, DIM):
        writer.put(moment)
    deadline = time.monotonic() + 30
    while writer.stats().written < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = writer.stats()
    assert (stats.written, stats.batches, stats.queued) == (20, 2, 5)  # five wait for the rest
    assert writer.close().written == 25  # close writes what is left
    assert table.count() == 25
    assert writer.close().state == "closed"  # idempotent


def test_a_partial_batch_is_written_after_flush_s(tmp_path):
    table = new_table(tmp_path)
    with MomentWriter(table, WriterPolicy(batch_rows=100, flush_s=0.2)) as writer:
        started = time.monotonic()
        for moment in random_moments(3, DIM):
            writer.put(moment)
        while table.count() < 3 and time.monotonic() - started < 30:
            time.sleep(0.02)
        assert table.count() == 3
        assert time.monotonic() - started >= 0.2


def test_flush_writes_what_is_queued_and_waits_for_it(tmp_path):
    table = new_table(tmp_path)
    with MomentWriter(table, WriterPolicy(batch_rows=100, flush_s=3600)) as writer:
        for moment in random_moments(7, DIM):
            writer.put(moment)
        assert writer.flush(timeout=30)
        assert table.count() == 7 and writer.stats().queued == 0


class StalledTable(MomentTable):
    """A table on a disk that hangs until released: a fault no real disk makes on cue."""

    def __init__(self, table: MomentTable) -> None:
        super().__init__(table.lance, table.dim, table.path)
        self.inside = threading.Event()
        self.release = threading.Event()

    def add(self, moments):
        self.inside.set()
        assert self.release.wait(60), "the test never released the disk"
        super().add(moments)


async def test_put_on_the_event_loop_never_waits_for_a_stalled_disk(tmp_path):
    table = StalledTable(new_table(tmp_path))
    policy = WriterPolicy(queue_rows=32, batch_rows=8, flush_s=3600)
    writer = MomentWriter(table, policy)
    moments = random_moments(108, DIM)
    for moment in moments[:8]:
        writer.put(moment)
    assert await asyncio.to_thread(table.inside.wait, 30)  # the first batch hangs in the disk
    slowest = 0.0
    for moment in moments[8:]:  # 100 more on a full queue
        started = time.perf_counter()
        writer.put(moment)
        slowest = max(slowest, time.perf_counter() - started)
        await asyncio.sleep(0)
    assert slowest < 0.05  # microseconds in fact; the margin is for a loaded machine
    stats = writer.stats()
    assert (stats.queued, stats.dropped, stats.written, stats.state) == (32, 68, 0, "ok")
    table.release.set()
    stats = await asyncio.to_thread(writer.close)
    assert (stats.written, stats.dropped, stats.lost) == (40, 68, 0)
    kept = sorted(m.media_time for m in all_rows(table))
    assert kept == [float(i) for i in [*range(8), *range(76, 108)]]  # the oldest went


FILL_DISK = textwrap.dedent(
    """
    import json, os, resource, signal, sys, time
    import numpy as np
    from streamer.archive.index import MomentTable
    from streamer.archive.moments import Moment
    from streamer.archive.writer import MomentWriter, WriterPolicy

    table = MomentTable.open(sys.argv[1], 32, create=True)
    writer = MomentWriter(table, WriterPolicy(batch_rows=4, flush_s=0.05))
    def moment(i):
        return Moment("cam", float(i), 1e9 + i, np.ones(32, np.float32) / 32 ** 0.5,
                      thumbnail=os.urandom(20_000))  # incompressible
    for i in range(4):
        writer.put(moment(i))
    writer.flush(30)
    # The disk is now "full": files may not grow past 50 kB (a batch needs about 80 kB).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))
    for i in range(4, 12):
        writer.put(moment(i))
    writer.flush(30)
    started = time.perf_counter()
    for i in range(12, 15):
        writer.put(moment(i))
    put_s = time.perf_counter() - started
    stats = writer.close()
    print(json.dumps({"put_s": put_s, **stats.__dict__}))
    """
)


def test_a_full_disk_stops_the_writer_which_counts_and_reports_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", FILL_DISK, str(tmp_path / "index")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["state"] == "failed"
    assert "File too large" in stats["error"] and "moments.lance" in stats["error"]
    assert ".rs:" not in stats["error"]  # LanceDB's source locations are trimmed
    assert (stats["written"], stats["lost"], stats["dropped"]) == (4, 11, 0)
    assert stats["put_s"] < 0.05
    assert "the archive stops writing moments" in done.stderr
    table = MomentTable.open(tmp_path / "index", DIM)
    assert table.count() == 4  # what was committed before the disk filled is intact


KEEP_WRITING = textwrap.dedent(
    """
    import dataclasses, os, sys
    from index_helpers import random_moments
    from streamer.archive.index import MomentTable

    table = MomentTable.open(sys.argv[1], 32, create=True)
    for batch in range(10_000):
        moments = random_moments(1000, 32, seed=batch, start_wall=1e9 + 1000 * batch)
        # 8 MB a batch: long enough to write that the kill lands inside one
        table.add([dataclasses.replace(m, thumbnail=os.urandom(8000)) for m in moments])
        print(1000 * (batch + 1), flush=True)
    """
)


def test_a_writer_killed_mid_batch_leaves_every_committed_batch_and_nothing_else(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    writer = subprocess.Popen(
        [sys.executable, "-c", KEEP_WRITING, str(tmp_path / "index")],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        committed = [int(writer.stdout.readline()) for _ in range(3)]
        data = tmp_path / "index" / "moments.lance" / "data"
        deadline = time.monotonic() + 30
        while len(list(data.iterdir())) <= 3 and time.monotonic() < deadline:
            time.sleep(0.001)  # until the fourth batch has started its data file
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
        committed += [int(line) for line in writer.stdout.read().split()]
    finally:
        writer.kill()
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    table = MomentTable.open(tmp_path / "index", DIM)
    rows = table.count()
    # Every batch reported committed is there; a batch being written is all there or absent.
    assert rows % 1000 == 0 and committed[-1] <= rows <= committed[-1] + 1000
    fragments = table.lance.stats()["fragment_stats"]["num_fragments"]
    if rows == committed[-1]:  # killed inside the write: its partial file is not in the table
        assert len(list(data.iterdir())) > fragments == rows // 1000
    times = table.lance.search().select(["media_time"]).limit(None).to_arrow()
    assert sorted(times["media_time"].to_pylist()) == sorted(
        float(i) for _ in range(rows // 1000) for i in range(1000)
    )
    table.add(random_moments(10, DIM, stream="after"))  # and it takes new batches
    assert table.count(where="stream = 'after'") == 10


# --- indexes -------------------------------------------------------------------------------------


def test_the_writer_makes_the_caption_index_and_optimizes_off_its_path(tmp_path):
    table = new_table(tmp_path)
    policy = WriterPolicy(batch_rows=5, flush_s=3600)
    index_policy = IndexPolicy(ann_rows=10_000, optimize_every=4)
    with MomentWriter(table, policy, index_policy) as writer:
        for moment in random_moments(40, DIM):  # eight batches: eight small files
            writer.put(moment)
        assert writer.flush(30)
        assert writer.wait_for_indexes(60)
        stats = writer.stats()
    assert stats.index_error is None and stats.batches == 8
    indexes = {index.columns[0]: index.index_type for index in table.lance.list_indices()}
    assert indexes == {"caption": "FTS", "stream": "Bitmap", "wall_time": "BTree",
                       "tag_labels": "LabelList"}  # fmt: skip
    # no vector index below ann_rows
    assert table.lance.stats()["fragment_stats"]["num_fragments"] < 8  # compacted
    assert table.count() == 40


def test_the_ann_index_is_built_past_its_threshold_and_again_when_outgrown(tmp_path):
    table = new_table(tmp_path)
    policy = IndexPolicy(ann_rows=300, ann_regrow=2.0)
    table.add(random_moments(299, DIM))
    assert table.maintain(policy) == ["fts", "filters"]
    assert table.vector_index_rows() is None and not table.has_vector_index()
    table.add(random_moments(1, DIM, seed=1))
    assert table.maintain(policy) == ["ann"]
    assert table.vector_index_rows() == 300 and table.has_vector_index()
    table.add(random_moments(299, DIM, seed=2))
    assert table.maintain(policy) == []  # 599 rows: not yet twice as many
    table.add(random_moments(1, DIM, seed=3))
    assert table.maintain(policy, optimize=True) == ["ann", "optimize"]
    vector_indexes = [i.name for i in table.lance.list_indices() if i.columns == ["embedding"]]
    assert vector_indexes == ["embedding_ann_600"]  # the outgrown one is gone


@pytest.mark.parametrize(
    ("options", "message"),
    [({"ann_rows": 0}, "ann_rows must be ≥ 1"), ({"ann_regrow": 1.0}, "ann_regrow must be > 1"),
     ({"ann_type": "HNSW"}, "ann_type must be one of IVF_RQ, IVF_SQ, IVF_PQ")],
)  # fmt: skip
def test_the_index_policy_refuses_bad_settings(options, message):
    with pytest.raises(ValueError, match=message):
        IndexPolicy(**options)
