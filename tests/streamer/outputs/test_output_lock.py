"""One writer per output file: a second run naming the same output stops at once, naming the
path and the process that writes it, and leaves that process's file as it was."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streamer.cli.main import main
from streamer.errors import ConfigError
from streamer.outputs.keep import keep_outputs
from streamer.outputs.lock import OutputLocks

pytest.importorskip("fcntl", reason="output locks are POSIX advisory locks (fcntl.flock)")

# Another process that writes the file: it takes the lock as a stream does, says so, and waits.
HOLDER = """
import sys, time
from streamer.outputs.lock import OutputLocks
OutputLocks("other", [sys.argv[1]]).acquire()
with open(sys.argv[1], "wb") as f:
    f.write(b"the other run's frames")
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def held(tmp_path):
    """`out.mp4` written and locked by another process: (its path, the process)."""
    path = tmp_path / "out.mp4"
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                          text=True) as holder:  # fmt: skip
        try:
            assert holder.stdout.readline().strip() == "held"
            yield path, holder
        finally:
            holder.kill()


def test_a_second_run_on_the_same_output_stops_naming_it_and_the_run_that_writes_it(
    held, small_clip, capsys
):
    path, holder = held
    code = main(["run", str(small_clip), "-o", str(path), "--weights", "random",
                 "--model", "tiny", "--no-llm"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"output {str(path)!r} is being written by another run (pid {holder.pid})" in err
    assert "give this run other output names" in err
    assert path.read_bytes() == b"the other run's frames"  # not truncated, not moved
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.mp4"]


def test_a_live_run_does_not_move_aside_what_another_run_is_recording(held):
    path, _ = held
    with pytest.raises(ConfigError, match="is being written by another run"):
        OutputLocks("door", [str(path)]).acquire()
    # what a live stream does with a finished recording, it must not do to this one
    assert path.read_bytes() == b"the other run's frames"


def test_the_file_is_free_again_once_its_writer_is_gone(held):
    path, holder = held
    holder.kill()  # killed: the kernel drops its lock
    holder.wait()
    locks = OutputLocks("door", [str(path), "-"]).acquire()
    locks.release()


def test_two_streams_of_one_process_cannot_share_a_file(tmp_path):
    path = str(tmp_path / "a.srt")
    first = OutputLocks("door", [path]).acquire()
    with pytest.raises(ConfigError, match="being written by another stream of this run"):
        OutputLocks("yard", [path]).acquire()
    first.release()
    OutputLocks("yard", [path]).acquire().release()  # released: free


def test_a_kept_recording_leaves_the_output_locked(tmp_path):
    """A live stream keeps its earlier recording beside the new one (`keep_outputs`) after
    taking the lock: the lock is the path's, so it holds for the file the stream writes."""
    path = tmp_path / "door.mp4"
    path.write_bytes(b"yesterday")
    locks = OutputLocks("door", [str(path)]).acquire()
    assert keep_outputs("door", [str(path)]) == [str(tmp_path / "door.keep-1.mp4")]
    with pytest.raises(ConfigError):
        OutputLocks("again", [str(path)]).acquire()
    locks.release()
    assert (tmp_path / "door.keep-1.mp4").read_bytes() == b"yesterday"
    assert not path.exists()  # nothing made early: the writer makes it


def test_the_lock_files_go_with_their_locks(tmp_path):
    folder = tmp_path / "locks"
    locks = OutputLocks("door", [str(tmp_path / "a.srt"), str(tmp_path / "a.jsonl")], folder)
    locks.acquire()
    assert len(list(folder.iterdir())) == 2
    locks.release()
    assert list(folder.iterdir()) == []


def test_a_cache_that_cannot_be_written_leaves_the_outputs_unlocked(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    locks = OutputLocks("door", [str(tmp_path / "a.srt")], blocker / "locks").acquire()
    OutputLocks("yard", [str(tmp_path / "a.srt")], blocker / "locks").acquire()  # no error
    locks.release()


def test_the_check_before_the_model_loads_finds_a_taken_output(held, small_clip):
    """Said while the sources open (the model loading beside them: a first run's export takes
    seconds), not once the model is ready."""
    from streamer import OutputConfig, RunConfig
    from streamer.run_setup import open_sources

    path, holder = held
    config = RunConfig(input=str(small_clip), outputs=OutputConfig(video=str(path)))
    with pytest.raises(ConfigError, match=rf"being written by another run \(pid {holder.pid}\)"):
        open_sources(config, None)
    free = RunConfig(
        input=str(small_clip), outputs=OutputConfig(video=str(path.with_name("b.mp4")))
    )
    assert [s.name for s in open_sources(free, None)] == [small_clip.stem]
