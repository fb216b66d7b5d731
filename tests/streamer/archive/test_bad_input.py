"""Bad input to an archive and its commands: a directory written by a newer streamer, a damaged
index, bad queries and bad settings. Each is one clear error naming the path or the value,
with the exit code of its class (`streamer.errors`), never a traceback, and nothing of the
archive changed. Real LanceDB tables, the commands run in this process."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from index_helpers import random_moments

from streamer.archive import Archive, EncoderSpec, MomentWriter, WriterPolicy
from streamer.archive.store import WriterLock
from streamer.cli.main import main
from streamer.errors import ConfigError

DIM = 64  # the tiny random CLIP's: the commands load the archive's own encoder


@pytest.fixture
def arch(tmp_path, tiny_encoder) -> Path:
    """An archive of the tiny CLIP with 40 moments of "gate", one a second."""
    root = tmp_path / "arch"
    with Archive.create(root, EncoderSpec.of(tiny_encoder)) as archive:
        writer = archive.writer(WriterPolicy(batch_rows=16, flush_s=0.05))
        for moment in random_moments(40, DIM, stream="gate", start_wall=1.7e9):
            writer.put(moment)
        assert writer.flush(30)
    return root


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _commands(arch: Path, tmp_path: Path, small_clip: Path) -> dict[str, list[str]]:
    return {
        "search": ["search", "a gate", "--archive", str(arch), "--thumbnails",
                   str(tmp_path / "thumbs")],
        "info": ["archive", "info", str(arch)],
        "prune": ["archive", "prune", str(arch), "--retain", "1d"],
        "run": ["run", str(small_clip), "--archive", str(arch), "--model", "tiny", "--weights",
                "random", "--no-llm", "--no-progress", "--no-cache"],
    }  # fmt: skip


def _refused(argv: list[str], capsys) -> str:
    """Run a command that must fail with exit code 1; its one-line message."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("streamer: error:")]
    return line


def test_a_newer_archive_is_refused_by_every_command_and_left_as_it_was(
    arch, tmp_path, small_clip, capsys
):
    meta = json.loads((arch / "archive.json").read_text())
    (arch / "archive.json").write_text(json.dumps({**meta, "format": 99, "streamer": "9.0"}))
    before = _files(arch)
    for name, argv in _commands(arch, tmp_path, small_clip).items():
        line = _refused(argv, capsys)
        assert str(arch) in line and "newer streamer (archive format 99" in line, name
        assert "upgrade streamer" in line, name
    assert _files(arch) == before


@pytest.mark.parametrize("damage", ["junk manifest", "no versions", "data cut short"])
def test_a_damaged_index_is_refused_by_every_command_naming_it(
    arch, tmp_path, small_clip, capsys, damage
):
    table = arch / "index" / "moments.lance"
    versions = sorted((table / "_versions").iterdir())
    for manifest in versions:
        if damage == "junk manifest":
            manifest.write_bytes(b"junk")
        elif damage == "no versions":
            manifest.unlink()
    if damage == "data cut short":  # the manifest reads; a run that wrote beside it said "ok"
        for data in (table / "data").glob("*.lance"):
            data.write_bytes(data.read_bytes()[:1000])
    before = _files(arch)
    commands = _commands(arch, tmp_path, small_clip)
    for name in ("search", "info", "run"):
        line = _refused(commands[name], capsys)
        assert str(table) in line and "may be damaged" in line and ".rs:" not in line, name
    assert _files(arch) == before  # nothing repaired, recreated or deleted unasked
    with WriterLock(arch):  # the refused run let the archive's lock go
        pass


@pytest.mark.parametrize(
    ("edit", "says", "makes", "commands"),
    [({"model": "ViT-B-32"}, 64, 512, ("search", "run")), ({"dim": 128}, 128, 64, ("run",))],
    ids=["model", "dim"],
)  # fmt: skip
def test_an_archive_json_whose_model_and_dim_disagree_is_refused_naming_it(
    arch, tmp_path, small_clip, capsys, edit, says, makes, commands
):
    path = arch / "archive.json"
    meta = json.loads(path.read_text())
    meta["encoder"].update(edit)
    path.write_text(json.dumps(meta))
    before = _files(arch)
    argvs = _commands(arch, tmp_path, small_clip)
    for name in commands:  # a run names the encoder archive.json now names
        line = _refused([meta["encoder"]["model"] if a == "tiny" else a for a in argvs[name]],
                        capsys)  # fmt: skip
        words = (f"{path} disagrees with itself: it says the archive's embeddings are "
                 f"{says}-d, but the encoder it names, clip {meta['encoder']['model']}, makes "
                 f"{makes}-d ones")  # fmt: skip
        assert words in line, (name, line)
        assert "restore archive.json from a backup, or set its encoder back" in line, line
    assert _files(arch) == before


def test_a_missing_or_unusable_archive_directory_is_an_error_naming_it(tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("not an archive")
    stranger = tmp_path / "holiday-photos"
    stranger.mkdir()
    (stranger / "beach.jpg").write_bytes(b"\xff\xd8")
    for path, words in ((tmp_path / "none", "no archive at"), (file, "is a file"),
                        (stranger, "not a streamer archive")):  # fmt: skip
        for argv in (["archive", "info", str(path)], ["search", "x", "--archive", str(path)]):
            line = _refused(argv, capsys)
            assert str(path) in line and words in line
    assert sorted(p.name for p in stranger.iterdir()) == ["beach.jpg"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["search", "", "--archive", "ARCH"], "words to look for, or a picture"),
        (["search", "   ", "--archive", "ARCH"], "words to look for, or a picture"),
        (["search", "--image", "MISSING", "--archive", "ARCH"], "MISSING: no such file"),
        (["search", "--image", "NOT_A_PICTURE", "--archive", "ARCH"],
         "cannot read it as a picture"),
        (["search", "x", "--archive", "ARCH", "--since", "teatime"], "--since 'teatime' is not"),
        (["search", "x", "--archive", "ARCH", "--until", "2020-13-45"], "--until '2020-13-45'"),
        (["search", "x", "--archive", "ARCH", "--since", "2024-05-02", "--until", "2024-05-01"],
         "is after --until"),
        (["search", "x", "--archive", "ARCH", "--stream", "door"],
         "unknown stream 'door'; the archive's streams: gate"),
        (["search", "x", "--archive", "ARCH", "-k", "0"], "-k"),
    ],
    ids=["empty", "blank", "missing-image", "unreadable-image", "bad-since", "bad-until",
         "since-after-until", "unknown-stream", "k-zero"],
)  # fmt: skip
def test_bad_queries_are_usage_errors_naming_the_problem(arch, tmp_path, capsys, argv, words):
    junk = tmp_path / "notes.jpg"
    junk.write_text("not a picture")
    values = {"ARCH": str(arch), "MISSING": str(tmp_path / "nope.jpg"), "NOT_A_PICTURE": str(junk)}
    words = words.replace("MISSING", values["MISSING"])
    argv = [values.get(a, a) for a in argv]
    if "--image" not in argv:
        argv += ["--thumbnails", str(tmp_path / "thumbs")]
    before = _files(arch)
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own refusal (-k 0)
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err, err
    assert _files(arch) == before


def test_an_image_query_on_a_real_picture_is_not_refused(arch, tmp_path, capsys):
    picture = tmp_path / "grey.png"
    cv2.imwrite(str(picture), np.full((64, 64, 3), 128, np.uint8))
    argv = ["search", "--image", str(picture), "--archive", str(arch), "-k", "3", "--json",
            "--thumbnails", str(tmp_path / "thumbs")]  # fmt: skip
    assert main(argv) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"batch_rows": 0}, "1 ≤ batch_rows ≤ queue_rows, got batch_rows=0"),
     ({"batch_rows": 10, "queue_rows": 5}, "queue_rows=5"),
     ({"batch_rows": 2.5}, "`batch_rows` must be a whole number, got 2.5"),
     ({"flush_s": 0}, "`flush_s` must be a number of seconds > 0, got 0"),
     ({"flush_s": float("nan")}, "flush_s"), ({"close_timeout_s": -1}, "close_timeout_s")],
)  # fmt: skip
def test_the_writer_policy_refuses_bad_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        WriterPolicy(**settings)


def test_a_moment_of_another_encoder_is_refused_by_the_writer(arch, tiny_encoder):
    with Archive.create(arch, EncoderSpec.of(tiny_encoder)) as archive:
        writer: MomentWriter = archive.writer()
        (wrong,) = random_moments(1, 32)
        with pytest.raises(ConfigError, match="embedding must have 64 values, got \\(32,\\)"):
            writer.put(wrong)


def test_an_encoder_spec_needs_a_positive_dimension():
    for dim in (0, -3, 2.0, True):
        with pytest.raises(ConfigError, match="dim must be a positive integer"):
            EncoderSpec("clip", "tiny", "random", dim)  # type: ignore[arg-type]


@pytest.fixture
def file_moments(tmp_path, tiny_encoder, small_clip) -> Path:
    """An archive of 2 moments of the small clip (a file whose media is there to cut)."""
    root, stat = tmp_path / "files", small_clip.stat()
    with Archive.create(root, EncoderSpec.of(tiny_encoder)) as archive:
        writer = archive.writer(WriterPolicy(batch_rows=16, flush_s=0.05))
        for moment in random_moments(2, DIM, stream="small", start_wall=1.7e9):
            writer.put(dataclasses.replace(moment, media_path=str(small_clip),
                       media_size=stat.st_size, media_mtime=stat.st_mtime))  # fmt: skip
        assert writer.flush(30)
    return root


def test_clips_and_thumbnails_where_nothing_can_be_written_are_refused_before_the_search(
    file_moments, tmp_path, read_only, capsys
):
    a_file = tmp_path / "a-file"
    a_file.write_text("")  # a folder "inside" a file: no user, root included, can make it
    (tmp_path / "locked").mkdir()
    locked = read_only(tmp_path / "locked")  # read-only for real, root included
    cases = [("--clips", a_file / "clips", f"{a_file} is a file"),
             ("--clips", locked, f"{locked} is "), ("--clips", locked / "new", f"{locked} is "),
             ("--thumbnails", locked / "thumbs", f"{locked} is ")]  # fmt: skip
    for flag, folder, why in cases:
        argv = ["search", "x", "--archive", str(file_moments), "--thumbnails",
                str(tmp_path / "thumbs"), flag, str(folder), "--after", "0.5s"]  # fmt: skip
        code, err = main(argv), capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and "[Errno" not in err, err
        (line,) = [line for line in err.splitlines() if line.startswith("streamer: error:")]
        assert f"{flag} {folder}: cannot write there ({why}" in line, line
        assert f"give {flag} a folder this user can write" in line, line
    assert list(locked.iterdir()) == []
    # The same search with a folder it can write cuts its clips.
    clips = tmp_path / "clips"
    assert main(["search", "x", "--archive", str(file_moments), "--clips", str(clips),
                 "--thumbnails", str(tmp_path / "thumbs"), "--after", "0.5s"]) == 0  # fmt: skip
    assert len(list(clips.glob("*.mp4"))) == 2


def test_pruning_an_archive_that_cannot_be_written_is_one_error_naming_it(arch, read_only, capsys):
    before = _files(arch)
    read_only(arch)
    line = _refused(["archive", "prune", str(arch), "--retain", "1s"], capsys)
    assert f"cannot prune archive {arch}: {arch / 'index'} is " in line, line
    assert "nothing was changed" in line and "[Errno" not in line, line
    assert "mount it read-write, or give this user write permission" in line, line
    assert _files(arch) == before
