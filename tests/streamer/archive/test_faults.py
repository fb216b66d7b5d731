"""An archive after faults: a live run killed with SIGKILL and the archive reopened by the next
run and by the commands; the catalogue repaired when a run opens the archive; and hits whose
media moved, changed or is gone, which say so. A real RTSP stream, a real MJPEG camera over
HTTP, real LanceDB, `streamer` as a subprocess."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from live_helpers import FAST, MjpegServer, Running
from media import ffprobe, video_stream

from streamer.archive import Archive, EncoderSpec, Moment, WriterPolicy
from streamer.archive.embedder import Embedder
from streamer.archive.recordings import Recorder, locate, prune, segments
from streamer.cli.main import main
from streamer.errors import ArchiveError
from streamer.sources import SourceRunner, open_source
from streamer.sources.options import DecodePlan

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[3]
TINY = ["--model", "tiny", "--weights", "random", "--no-llm", "--no-progress", "--no-cache"]
DIM = 8
SPEC = EncoderSpec("clip", "tiny", "random", DIM)


def _streamer(*args: object, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "streamer", *map(str, args)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _command(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    process = _streamer(*args, cwd=cwd)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _wait(condition, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"streamer run ended ({process.returncode}) before {what}: "
                                 f"{process.stderr.read()}")  # fmt: skip
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def _rows(arch: Path) -> int:
    try:
        return Archive(arch).info().rows
    except ArchiveError:  # not made yet
        return 0


def _search(arch: Path, tmp_path: Path) -> list[dict]:
    picture = tmp_path / "grey.png"
    cv2.imwrite(str(picture), np.full((180, 320, 3), 128, np.uint8))
    done = _command("search", "--image", picture, "--archive", arch, "-k", "1000", "--json",
                    "--thumbnails", tmp_path / "thumbs", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def _check_every_moment_says_where_its_media_is(arch: Path, rows: list[dict]) -> None:
    """Every moment of the archive, searched with the API (exact times): "ok" exactly when a
    recording holds it, and then it names that segment; the command says the same."""
    spec = Archive(arch).meta.encoder
    unit = np.ones(spec.dim, np.float32) / np.sqrt(spec.dim)
    with Archive(arch, embedder=Embedder(lambda _: unit, None, spec)) as archive:
        hits = archive.search(image=np.zeros((4, 4, 3), np.uint8), k=1000)
    assert hits and len(hits) == len(rows)
    for hit in hits:
        found = locate(arch, "door", hit.moment.wall_time)
        assert (hit.media_state == "ok") == (found is not None), hit
        assert hit.media_state in ("ok", "missing")
        if found is not None:
            assert hit.media == str(arch / found[0].path) and Path(hit.media).is_file()
            assert hit.media_offset == pytest.approx(found[1])
    states = sorted(h.media_state for h in hits)
    assert sorted(row["media_state"] for row in rows) == states


@pytest.mark.slow
@pytest.mark.integration
def test_a_killed_live_run_leaves_an_archive_the_next_run_and_the_commands_open(
    rtsp_server, tmp_path
):
    arch = tmp_path / "arch"
    run = ["run", f"door={rtsp_server.url('cam1')}", "--archive", arch, "--segment", "6s",
           "--index-every", "1s", *TINY]  # fmt: skip
    process = _streamer(*run, cwd=tmp_path)
    try:
        # The first moment is committed at once (its caption is the first); the next ones
        # wait for a new caption, which a still picture with tags for captions never gets.
        _wait(lambda: len(segments(arch, "door")) >= 1 and _rows(arch) >= 1, 90,
              "a segment and a moment", process)  # fmt: skip
        count = len(segments(arch, "door"))
        _wait(lambda: len(segments(arch, "door")) > count, 20, "a new segment", process)
        # A fragment (a second: the pattern's key frames) or more into it, and far from its
        # end (6 s) even on a loaded machine: the kill cuts it short.
        time.sleep(2.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
    *whole, cut = segments(arch, "door")
    assert all(s.complete for s in whole)
    assert not cut.writing and not cut.complete and cut.end_wall is None  # cut short
    info = ffprobe(arch / cut.path, "-show_frames", "-select_streams", "v")
    played = int(video_stream(info)["nb_read_frames"])
    assert played >= 20 and info["frames"][0]["key_frame"] == 1  # its first fragment plays
    # The commands open what the killed run left: the index (its last batch lost at most).
    done = _command("archive", "info", arch, "--json", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert json.loads(done.stdout)["rows"] >= 1
    _check_every_moment_says_where_its_media_is(arch, _search(arch, tmp_path))
    # The next run takes the archive over (the lock died with the killed run), repairs the
    # catalogue and records on.
    process = _streamer(*run, cwd=tmp_path)
    try:
        _wait(lambda: len(segments(arch, "door")) > len(whole) + 1, 90, "a new segment", process)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode in (0, 130) and "Traceback" not in err, err
    repaired = segments(arch, "door")[len(whole)]
    assert repaired.path == cut.path and not repaired.complete
    assert abs(repaired.frames - played) <= 1 and repaired.bytes == (arch / cut.path).stat().st_size
    assert repaired.end_wall == pytest.approx(cut.start_wall + repaired.duration, abs=0.01)
    assert segments(arch, "door")[len(whole) + 1].reason == "start"  # the new run's
    _check_every_moment_says_where_its_media_is(arch, _search(arch, tmp_path))


# -- a catalogue repaired when a run opens the archive -----------------------------------------


def _jpegs(clip: Path, count: int = 10) -> list[bytes]:
    with av.open(str(clip)) as container:
        frames = itertools.islice(container.decode(video=0), count)
        return [cv2.imencode(".jpg", f.to_ndarray(format="bgr24"))[1].tobytes() for f in frames]


class _Tapped:
    def __init__(self, tap: Recorder) -> None:
        self.tap = tap

    def run(self, source, out, stop):
        return SourceRunner(DecodePlan(full_frames=False)).run(source, out, stop, self.tap)


@pytest.fixture(scope="module")
def recorded(small_clip, tmp_path_factory) -> Path:
    """An archive with four 1 s segments of an MJPEG camera, "door" (recorded once)."""
    arch = tmp_path_factory.mktemp("recorded") / "arch"
    Archive.create(arch, SPEC).close()
    server = MjpegServer(_jpegs(small_clip), per_connection=10**9)

    async def record() -> None:
        recorder = Recorder(arch, "door", segment_s=1.0)
        source = open_source(server.url(), "door", options=FAST)
        async with Running(source, capacity=512, runner=_Tapped(recorder)) as run:
            await run.until(lambda: recorder.state.files >= 5, 20, "five segments")

    try:
        asyncio.run(record())
    finally:
        server.close()
    assert len(segments(arch, "door")) == 5
    return arch


@pytest.fixture
def archive_copy(recorded, tmp_path) -> Path:
    shutil.copytree(recorded, tmp_path / "arch")
    return tmp_path / "arch"


def test_opening_an_archive_for_writing_closes_what_a_killed_run_left_open(archive_copy):
    arch = archive_copy
    whole = segments(arch, "door")[0]
    # What a kill leaves: a file cut in the middle of a fragment, opened in the catalogue only.
    cut = arch / "recordings" / "door" / "20300101T000000.000Z.mp4"
    data = (arch / whole.path).read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 4])
    start = segments(arch, "door")[-1].end_wall + 1.0
    with (arch / "recordings" / "door" / "segments.jsonl").open("a") as catalogue:
        catalogue.write(json.dumps({"event": "open", "file": cut.name, "start_wall": start,
                                    "start_media": 0.0, "reason": "start", "codec": "h264",
                                    "width": 320, "height": 180}) + "\n")  # fmt: skip
        catalogue.write('{"event":"close","fi')  # torn by the kill
    before = segments(arch, "door")[-1]
    assert before.end_wall is None and not before.complete and not before.writing
    Archive.create(arch, SPEC).close()  # as the next run does, whatever it records
    after = segments(arch, "door")[-1]
    assert after.path == before.path and not after.complete
    assert 0 < after.frames < whole.frames and after.bytes == cut.stat().st_size
    assert after.end_wall == pytest.approx(start + after.duration, abs=0.01)
    assert after.duration == pytest.approx(after.frames / 25, abs=0.05)
    lines = (arch / "recordings" / "door" / "segments.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["repaired"] is True
    assert all(s.complete for s in segments(arch, "door")[:-1])  # the others left as they were


# -- hits say where their media is -------------------------------------------------------------


def _put(arch: Path, moments: list[Moment]) -> Archive:
    with Archive.create(arch, SPEC) as archive:
        writer = archive.writer(WriterPolicy(batch_rows=8, flush_s=0.05))
        for moment in moments:
            writer.put(moment)
        assert writer.flush(30)
    return Archive(arch, embedder=Embedder(lambda _: np.eye(DIM, dtype=np.float32)[0], None, SPEC))


def _by_stream(archive: Archive) -> dict:
    hits = archive.search(image=np.zeros((4, 4, 3), np.uint8), k=100)
    return {hit.moment.stream: hit for hit in hits}


def _moment(stream: str, wall: float, media: Path | None = None, media_time: float = 1.0):
    stat = media.stat() if media is not None else None
    return Moment(
        stream, media_time, wall, np.eye(DIM, dtype=np.float32)[0],
        media_path=str(media) if media is not None else None,
        media_size=stat.st_size if stat else None, media_mtime=stat.st_mtime if stat else None,
    )  # fmt: skip


def test_a_file_moved_changed_or_gone_says_so(small_clip, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    files = {name: videos / f"{name}.mp4" for name in ("kept", "grown", "touched", "moved",
                                                         "away", "gone")}  # fmt: skip
    for path in files.values():
        shutil.copy(small_clip, path)
    archive = _put(tmp_path / "arch", [_moment(n, 1e9, p) for n, p in files.items()])
    with files["grown"].open("ab") as grown:
        grown.write(b"\0")
    os.utime(files["touched"], (1e9, 1e9))
    files["moved"].rename(tmp_path / "moved.mp4")  # beside the archive: found there
    (tmp_path / "elsewhere").mkdir()
    files["away"].rename(tmp_path / "elsewhere" / "away.mp4")  # not looked for there
    files["gone"].unlink()
    monkeypatch.chdir(videos)
    hits = _by_stream(archive)
    states = {stream: hit.media_state for stream, hit in hits.items()}
    assert states == {"kept": "ok", "grown": "changed", "touched": "changed", "moved": "moved",
                      "away": "missing", "gone": "missing"}  # fmt: skip
    assert hits["kept"].media == str(files["kept"]) and hits["kept"].media_offset == 1.0
    assert hits["moved"].media == str((tmp_path / "moved.mp4").resolve())
    assert hits["gone"].media is None and hits["gone"].media_offset is None
    assert hits["gone"].moment.media_path == str(files["gone"])  # the index is left as it was


def test_a_recording_pruned_deleted_or_changed_says_so(archive_copy):
    arch = archive_copy
    first, second, third, fourth, last = segments(arch, "door")
    walls = {
        "pruned": first.start_wall + 0.5, "kept": second.start_wall + 0.5,
        "deleted": third.start_wall + 0.5, "changed": fourth.start_wall + 0.5,
        "after the last": last.end_wall + 5.0,
    }  # fmt: skip
    moments = [_moment("door", wall) for wall in walls.values()]
    archive = _put(arch, [*moments, _moment("never-recorded", second.start_wall + 0.5)])
    assert prune(arch, retain_s=0.0, max_bytes=None, now=first.end_wall + 0.01) == [first]
    (arch / third.path).unlink()
    with (arch / fourth.path).open("ab") as changed:
        changed.write(b"\0")
    hits = archive.search(image=np.zeros((4, 4, 3), np.uint8), k=100)
    label = {wall: name for name, wall in walls.items()}
    states = {(label[h.moment.wall_time] if h.moment.stream == "door" else h.moment.stream):
              h for h in hits}  # fmt: skip
    assert {name: hit.media_state for name, hit in states.items()} == {
        "pruned": "missing", "kept": "ok", "deleted": "missing", "changed": "changed",
        "after the last": "missing", "never-recorded": "missing",
    }  # fmt: skip
    kept = states["kept"]
    assert kept.media == str(arch / second.path) and kept.media_offset == pytest.approx(0.5)


@pytest.mark.integration
def test_the_search_command_says_where_media_went_and_cuts_no_clip_of_what_is_gone(
    small_clip, tmp_path, tiny_encoder, capsys
):
    spec = EncoderSpec.of(tiny_encoder)
    videos = tmp_path / "videos"
    videos.mkdir()
    kept, gone = videos / "kept.mp4", videos / "gone.mp4"
    for path in (kept, gone):
        shutil.copy(small_clip, path)
    vector = np.ones(spec.dim, np.float32) / np.sqrt(spec.dim)
    with Archive.create(tmp_path / "arch", spec) as archive:
        writer = archive.writer()
        for path in (kept, gone):
            moment = _moment(path.stem, 1e9, path)
            writer.put(Moment(**{**moment.__dict__, "embedding": vector}))
    gone.unlink()
    picture = tmp_path / "grey.png"
    cv2.imwrite(str(picture), np.full((180, 320, 3), 128, np.uint8))
    search = ["search", "--image", picture, "--archive", tmp_path / "arch", "--thumbnails",
              tmp_path / "thumbs", "--clips", tmp_path / "clips", "--before", "0.5s",
              "--after", "0.5s"]  # fmt: skip
    assert main([*map(str, search), "--json"]) == 0
    out, err = capsys.readouterr()
    rows = {row["stream"]: row for row in json.loads(out)}
    assert rows["kept"]["media_state"] == "ok" and rows["kept"]["media"] == str(kept)
    assert int(video_stream(ffprobe(rows["kept"]["clip"]))["nb_read_frames"]) >= 20
    assert rows["gone"]["media_state"] == "missing" and rows["gone"]["clip"] is None
    assert "no clip, its media is missing" in err
    assert main(list(map(str, search))) == 0
    lines = capsys.readouterr().out.splitlines()
    (line,) = [line for line in lines if "gone @" in line]
    assert "media missing" in line
