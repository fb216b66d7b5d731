"""The archive directory: its metadata, the refusals that change nothing, the writer lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streamer.archive.store import (
    ARCHIVE_FILE,
    FORMAT,
    LOCK_FILE,
    EncoderSpec,
    WriterLock,
    create_or_open,
    open_for_writing,
    read_meta,
)
from streamer.core.version import __version__
from streamer.errors import ArchiveError, ConfigError

CLIP = EncoderSpec("clip", "ViT-B/32", "pretrained", 512)
REPO = Path(__file__).resolve().parents[3]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a directory): to see nothing changed."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def test_a_new_archive_gets_its_layout_and_metadata(tmp_path):
    root = tmp_path / "deep" / "archive"
    meta, lock = open_for_writing(root, CLIP)
    lock.release()
    assert sorted(p.name for p in root.iterdir()) == ["archive.json", "index", "recordings",
                                                      "write.lock"]  # fmt: skip
    data = json.loads((root / ARCHIVE_FILE).read_text())
    assert data["format"] == FORMAT == 1
    assert data["encoder"] == {"kind": "clip", "model": "ViT-B/32", "weights": "pretrained",
                               "dim": 512}  # fmt: skip
    assert data["created"].endswith("Z") and data["streamer"] == __version__
    assert read_meta(root) == meta


def test_reopening_with_the_same_encoder_keeps_the_metadata(tmp_path):
    first = create_or_open(tmp_path / "a", CLIP)
    assert create_or_open(tmp_path / "a", CLIP) == first


@pytest.mark.parametrize(
    "other",
    [
        EncoderSpec("dinov2", "small", "pretrained", 384),
        EncoderSpec("clip", "ViT-B-16", "pretrained", 512),
        EncoderSpec("clip", "ViT-B/32", "random", 512),
    ],
    ids=["kind", "model", "weights"],
)
def test_another_encoder_is_refused_naming_both(tmp_path, other):
    create_or_open(tmp_path / "a", CLIP)
    before = snapshot(tmp_path / "a")
    with pytest.raises(ConfigError) as caught:
        open_for_writing(tmp_path / "a", other)
    message = str(caught.value)
    assert CLIP.describe() in message and other.describe() in message
    assert str(tmp_path / "a") in message
    assert snapshot(tmp_path / "a") == before


def write_meta(root: Path, text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / ARCHIVE_FILE).write_text(text)


def test_a_newer_format_is_refused_and_left_alone(tmp_path):
    root = tmp_path / "a"
    newer = {"format": 2, "created": "2030-01-01T00:00:00Z", "streamer": "9.0.0", "encoder": {}}
    write_meta(root, json.dumps(newer))
    (root / "index").mkdir()
    (root / "index" / "data.bin").write_bytes(b"x" * 10)
    before = snapshot(root)
    for attempt in (lambda: read_meta(root), lambda: open_for_writing(root, CLIP)):
        with pytest.raises(ArchiveError) as caught:
            attempt()
        assert "newer streamer" in str(caught.value) and "format 2" in str(caught.value)
        assert "upgrade" in str(caught.value) and str(root) in str(caught.value)
    assert snapshot(root) == before  # not even a lock file


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"format": 1, "encoder": {', "not valid JSON"),
        ("[1, 2]", "not an object"),
        ('{"format": "one"}', "'format' must be a positive integer"),
        ('{"format": 1, "created": "x", "streamer": "0.1.0"}', "'encoder' must be an object"),
        ('{"format": 1, "created": "x", "streamer": "0.1.0", "encoder": {"kind": "clip"}}',
         "missing 'model'"),
        ('{"format": 1, "created": "x", "streamer": "0.1.0", "encoder": '
         '{"kind": "clip", "model": "m", "weights": "random", "dim": -3}}', "dim must be"),
    ],
    ids=["truncated", "list", "format", "no-encoder", "no-model", "bad-dim"],
)  # fmt: skip
def test_damaged_metadata_is_an_archive_error_naming_file_and_fix(tmp_path, text, what):
    root = tmp_path / "a"
    write_meta(root, text)
    before = snapshot(root)
    with pytest.raises(ArchiveError) as caught:
        read_meta(root)
    message = str(caught.value)
    assert str(root / ARCHIVE_FILE) in message and what in message
    assert "damaged" in message and "restore" in message
    with pytest.raises(ArchiveError):
        open_for_writing(root, CLIP)
    assert snapshot(root) == before


def test_unreadable_metadata_is_an_archive_error(tmp_path):
    (tmp_path / "a" / ARCHIVE_FILE).mkdir(parents=True)  # unreadable as a file, even for root
    with pytest.raises(ArchiveError, match=r"cannot read .*archive\.json"):
        read_meta(tmp_path / "a")


def test_a_file_is_not_an_archive(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    for attempt in (lambda: read_meta(path), lambda: open_for_writing(path, CLIP)):
        with pytest.raises(ArchiveError, match="is a file, not a directory"):
            attempt()
    assert path.read_text() == "mine"


def test_reading_a_missing_archive_says_how_to_make_one(tmp_path):
    with pytest.raises(ArchiveError, match=r"no archive at .*--archive"):
        read_meta(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_a_directory_of_other_things_is_not_taken_over(tmp_path):
    (tmp_path / "home" / "photos").mkdir(parents=True)
    (tmp_path / "home" / "todo.txt").write_text("x")
    before = snapshot(tmp_path / "home")
    with pytest.raises(ArchiveError, match=r"not empty and not a streamer archive.*photos"):
        open_for_writing(tmp_path / "home", CLIP)
    with pytest.raises(ArchiveError, match=r"not a streamer archive .*no archive\.json"):
        read_meta(tmp_path / "home")
    assert snapshot(tmp_path / "home") == before


def test_an_index_without_its_metadata_is_damaged_not_recreated(tmp_path):
    (tmp_path / "a" / "index" / "moments.lance").mkdir(parents=True)
    with pytest.raises(ArchiveError, match=r"missing but .*index holds an index"):
        open_for_writing(tmp_path / "a", CLIP)
    assert not (tmp_path / "a" / ARCHIVE_FILE).exists()


def test_an_empty_directory_becomes_an_archive(tmp_path):
    _, lock = open_for_writing(tmp_path, CLIP)
    lock.release()
    assert read_meta(tmp_path).encoder == CLIP


def test_one_writer_at_a_time_and_the_message_names_the_holder(tmp_path):
    _, lock = open_for_writing(tmp_path / "a", CLIP)
    with pytest.raises(ArchiveError) as caught:
        open_for_writing(tmp_path / "a", CLIP)
    assert f"pid {os.getpid()}" in str(caught.value)
    assert "another run" in str(caught.value)
    assert read_meta(tmp_path / "a").encoder == CLIP  # readers need no lock
    lock.release()
    lock.release()  # idempotent
    _, again = open_for_writing(tmp_path / "a", CLIP)
    again.release()


HOLD = textwrap.dedent(
    """
    import sys, time
    from streamer.archive.store import WriterLock
    lock = WriterLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_the_lock_of_a_killed_run_is_gone_with_it(tmp_path):
    create_or_open(tmp_path / "a", CLIP)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "a")], stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ArchiveError, match=f"pid {holder.pid}"):
            WriterLock(tmp_path / "a").acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait(10)
        holder.stdout.close()
    with WriterLock(tmp_path / "a") as lock:
        assert lock.held
        assert (tmp_path / "a" / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not lock.held


def test_the_spec_of_an_encoder_records_what_was_loaded(tiny_encoder):
    assert EncoderSpec.of(tiny_encoder) == EncoderSpec("clip", "tiny", "random", 64)
    assert EncoderSpec.of(tiny_encoder, weights="auto").weights == "random"
