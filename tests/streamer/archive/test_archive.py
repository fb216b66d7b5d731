"""The `Archive` API: info counts right, pruning the index, reading while a run writes, and
the encoder an archive is searched with."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from index_helpers import random_moments, tiny_spec

from streamer.archive import Archive, Embedder, EncoderSpec, WriterPolicy
from streamer.errors import ArchiveError, ConfigError

DIM = 16
SPEC = EncoderSpec("clip", "tiny", "random", DIM)
T0 = 1.7e9
REPO = Path(__file__).resolve().parents[3]


def write(archive: Archive, moments) -> None:
    writer = archive.writer(WriterPolicy(batch_rows=32, flush_s=0.05))
    for moment in moments:
        writer.put(moment)
    assert writer.flush(60)


@pytest.fixture
def filled(tmp_path):
    """Two streams: "gate" 100 moments from T0 (one a second), "door" 40 from T0 + 50."""
    with Archive.create(tmp_path / "a", SPEC) as archive:
        write(archive, random_moments(100, DIM, stream="gate", start_wall=T0))
        write(archive, random_moments(40, DIM, stream="door", seed=1, start_wall=T0 + 50))
    return tmp_path / "a"


def test_info_counts_streams_spans_rows_and_disk_use(filled):
    (filled / "recordings" / "gate").mkdir()
    (filled / "recordings" / "gate" / "000001.mp4").write_bytes(b"\0" * 12_345)
    info = Archive(filled).info()
    assert info.rows == 140
    assert [(s.stream, s.rows) for s in info.streams] == [("door", 40), ("gate", 100)]
    door, gate = info.streams
    assert (gate.first_wall, gate.last_wall) == (T0, T0 + 99)
    assert (door.first_wall, door.last_wall) == (T0 + 50, T0 + 89)
    assert (door.first_media, door.last_media) == (0.0, 39.0)
    assert (info.oldest, info.newest) == (T0, T0 + 99)
    assert info.recordings_bytes == 12_345
    assert info.index_bytes > 140 * DIM * 2  # at least the float16 vectors
    assert info.meta.encoder == SPEC and not info.vector_index


def test_info_of_an_archive_with_no_moments_yet(tmp_path):
    Archive.create(tmp_path / "a", SPEC).close()
    info = Archive(tmp_path / "a").info()
    assert (info.rows, info.streams, info.oldest, info.newest) == (0, (), None, None)
    assert Archive(tmp_path / "a").search(image=np.zeros((4, 4, 3), np.uint8)) == []


def test_prune_index_deletes_what_is_older_of_one_stream_or_all(filled):
    archive = Archive(filled)
    assert archive.prune_index(T0 + 60, stream="door") == 10
    assert {s.stream: s.rows for s in archive.info().streams} == {"door": 30, "gate": 100}
    assert archive.prune_index(T0 + 80) == 80 + 20
    info = Archive(filled).info()
    assert {s.stream: (s.rows, s.first_wall) for s in info.streams} == {
        "door": (10, T0 + 80),
        "gate": (20, T0 + 80),
    }
    assert archive.prune_index(T0) == 0


def test_prune_index_waits_for_no_one_and_refuses_while_a_run_writes(filled):
    with Archive.create(filled, SPEC) as running:
        with pytest.raises(ArchiveError, match="being written by another run"):
            Archive(filled).prune_index(T0 + 1000)
        assert running.prune_index(T0 + 10) == 10  # the run itself may prune
    assert Archive(filled).info().rows == 130


def test_a_reader_sees_what_a_running_writer_commits(tmp_path):
    with Archive.create(tmp_path / "a", SPEC) as running:
        write(running, random_moments(10, DIM, stream="gate", start_wall=T0))
        reader = Archive(tmp_path / "a")
        assert reader.info().rows == 10
        write(running, random_moments(5, DIM, stream="door", start_wall=T0))
        deadline = time.monotonic() + 10
        while reader.info().rows < 15 and time.monotonic() < deadline:
            time.sleep(0.1)  # readers look for a new version at most once a second
        assert reader.info().rows == 15


def test_a_reading_archive_has_no_writer(filled):
    with pytest.raises(ArchiveError, match=r"opened for reading; Archive\.create\(\)"):
        Archive(filled).writer()


def test_the_writer_is_closed_with_the_archive(tmp_path):
    archive = Archive.create(tmp_path / "a", SPEC)
    writer = archive.writer(WriterPolicy(batch_rows=100, flush_s=3600))
    assert archive.writer() is writer
    for moment in random_moments(3, DIM):
        writer.put(moment)
    archive.close()
    assert writer.state == "closed" and Archive(tmp_path / "a").info().rows == 3
    Archive.create(tmp_path / "a", SPEC).close()  # the lock went with it


def test_searching_with_another_encoder_is_refused(filled, tiny_encoder):
    # (The same encoder making vectors of another length is an edited archive.json: an
    # ArchiveError, test_bad_input.)
    other = EncoderSpec("dinov2", "small", "random", 64)
    with pytest.raises(ConfigError, match=r"holds embeddings of clip tiny \(random, 16-d\)"):
        Archive(filled, embedder=Embedder.of(tiny_encoder, other))


def test_without_an_embedder_the_archive_loads_its_own_encoder(tmp_path, tiny_encoder):
    spec = tiny_spec(tiny_encoder)
    picture = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    with Archive.create(tmp_path / "a", spec) as archive:
        moments = random_moments(20, spec.dim)
        moments[7] = type(moments[7])("gate", 7.0, T0, tiny_encoder.embed(picture)[0].numpy())
        write(archive, moments)
    archive = Archive(tmp_path / "a", device="cpu")
    best = archive.search(image=picture, k=1)[0]  # clip tiny random, loaded from archive.json
    assert best.moment.stream == "gate" and best.similarity > 0.999
    assert archive.embedder.spec == spec


def test_importing_the_archive_loads_neither_lancedb_nor_torch():
    code = (
        "import sys; import streamer.archive as a; a.Moment, a.MomentPicker, a.EncoderSpec; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lancedb', 'pyarrow', 'torch', "
        "'cv2', 'encoders'}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_package_exports_what_it_pins():
    import streamer.archive as archive

    for name in archive.__all__:
        assert getattr(archive, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        archive.Nope  # noqa: B018


@pytest.mark.parametrize("damage", ["truncated data", "missing data", "junk manifest"])
def test_a_damaged_index_is_an_archive_error_naming_it_and_left_alone(filled, damage):
    table = filled / "index" / "moments.lance"
    if damage == "junk manifest":
        for manifest in (table / "_versions").iterdir():
            manifest.write_bytes(b"junk")
    else:
        for data in (table / "data").iterdir():
            if damage == "missing data":
                data.unlink()
            else:
                with open(data, "r+b") as file:
                    file.truncate(100)
    before = {p: p.read_bytes() for p in filled.rglob("*") if p.is_file()}
    archive = Archive(filled, embedder=Embedder(lambda _: np.ones(DIM), None, SPEC))
    attempts = (archive.info, lambda: archive.search(image=np.zeros((4, 4, 3), np.uint8)),
                lambda: archive.search("a van"))  # fmt: skip
    for attempt in attempts:
        with pytest.raises(ArchiveError) as caught:
            attempt()
        message = str(caught.value)
        assert str(table) in message and "may be damaged" in message and ".rs:" not in message
    assert {p: p.read_bytes() for p in filled.rglob("*") if p.is_file()} == before
