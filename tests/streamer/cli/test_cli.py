"""The `streamer` command as a user runs it: real clips, real exit codes, real files."""

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator

import pytest
from media import ffprobe, parse_srt, parse_vtt, read_jsonl, stream_types, video_stream

from bench.harness.lmstudio import LmStudioDouble

pytestmark = pytest.mark.integration

F_SETPIPE_SZ = 1031  # Linux's fcntl to size a pipe (not in Python's fcntl before 3.10 on all)


# The tiny registered CLIP and the fastest x264 preset: the command's behaviour, quickly.
TINY = ["--model", "tiny", "--weights", "random", "--preset", "ultrafast"]


def streamer(*args, timeout=120, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "streamer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.mark.slow
def test_acceptance_real_clip_clip_vit_b32_random_weights(tmp_path, sample_clip):
    out = tmp_path / "out"
    out.mkdir()
    done = streamer(
        "run",
        sample_clip,
        "-o",
        out / "out.mp4",
        "--srt",
        out / "out.srt",
        "--jsonl",
        out / "out.jsonl",
        "--encoder",
        "clip",
        "--weights",
        "random",
        "--device",
        "cpu",
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    source, written = video_stream(ffprobe(sample_clip)), ffprobe(out / "out.mp4")
    assert video_stream(written)["nb_read_frames"] == source["nb_read_frames"] == "132"
    assert float(video_stream(written)["duration"]) == pytest.approx(
        float(source["duration"]), abs=0.04
    )
    assert stream_types(written) == ["video", "audio"]
    assert parse_srt((out / "out.srt").read_text())
    analysed = [r for r in read_jsonl(out / "out.jsonl") if r["type"] == "analysis"]
    assert len(analysed) == 11  # 5.28 s at 2 analysed frames/s
    assert "RANDOM weights" in done.stderr
    assert "132 frames" in done.stderr


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda p: None, 1, "does not exist"),
        (lambda p: p.write_bytes(b""), 1, "empty (0 bytes)"),
        (lambda p: p.write_text("hello, not a video\n" * 200), 1, "not a readable video"),
    ],
    ids=["missing", "zero-bytes", "text-file"],
)
def test_bad_input_fails_fast_with_the_reason(tmp_path, make, code, words):
    bad = tmp_path / "in.mp4"
    make(bad)
    started = time.monotonic()
    done = streamer(
        "run",
        bad,
        "--jsonl",
        tmp_path / "x.jsonl",
        "--encoder",
        "clip",
        "--model",
        "tiny",
        "--weights",
        "random",
    )
    assert done.returncode == code
    assert words in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


def test_unwritable_output_is_refused_before_work(tmp_path, small_clip):
    done = streamer("run", small_clip, "-o", tmp_path / "no" / "such" / "dir" / "a.mp4")
    assert done.returncode == 2 and "does not exist; create it first" in done.stderr


def test_no_output_is_a_usage_error(small_clip):
    done = streamer("run", small_clip)
    assert done.returncode == 2 and "nothing to write" in done.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(["--encoder", "nope"], "clip", id="encoder"),
        pytest.param(
            ["--encoder", "clip", "--model", "ViT-Q/99"],
            "ViT-B/32",
            id="model",
            marks=pytest.mark.slow,
        ),  # imports open_clip to list its model names
    ],
)
def test_unknown_encoder_or_model_lists_valid_names(tmp_path, small_clip, args, words):
    done = streamer(
        "run", small_clip, "--jsonl", tmp_path / "a.jsonl", *args, "--weights", "random"
    )
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_truncated_input_annotates_what_decodes_and_exits_3(tmp_path, truncated_clip):
    outputs = ["-o", tmp_path / "a.mp4", "--srt", tmp_path / "a.srt"]
    done = streamer("run", truncated_clip, *outputs, *TINY)
    assert done.returncode == 3, done.stderr
    assert "input incomplete" in done.stderr and "stopped after frame" in done.stderr
    frames = int(video_stream(ffprobe(tmp_path / "a.mp4"))["nb_read_frames"])
    assert 10 < frames < 132
    assert parse_srt((tmp_path / "a.srt").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finalises_a_playable_mp4_and_complete_subtitles(
    tmp_path, long_clip, signum, code
):
    out = tmp_path / "a.mp4"
    outputs = ["-o", out, "--srt", tmp_path / "a.srt", "--jsonl", tmp_path / "a.jsonl"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", long_clip, *outputs, *TINY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 200_000):
        time.sleep(0.1)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert f"{signal.Signals(signum).name}: stopping" in stderr
    assert "aborted" not in stderr  # one signal: a graceful stop, not an abort
    frames = int(video_stream(ffprobe(out))["nb_read_frames"])
    assert 0 < frames < 132 * 6
    assert f"streamer: stopped early: {frames} frames" in stderr  # exactly what the file holds
    parse_srt((tmp_path / "a.srt").read_text())
    read_jsonl(tmp_path / "a.jsonl")


@pytest.mark.slow
def test_encoders_matrix_and_list():
    matrix = streamer("encoders", "matrix")
    assert matrix.returncode == 0
    for use in ("real-time", "medical", "satellite", "edge"):
        assert use in matrix.stdout.lower()
    listing = streamer("encoders", "list")
    assert listing.returncode == 0 and "ViT-B/32" in listing.stdout and "small" in listing.stdout


def test_sample_command_prints_the_clip_path(tmp_path, sample_clip):
    cached = tmp_path / "streamer" / "samples" / "bigbuckbunny.mp4"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(sample_clip.read_bytes())
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    done = streamer("sample", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(cached) and "Blender" in done.stderr


@pytest.mark.slow
def test_missing_pretrained_weights_offline_fail_fast_naming_the_fixes(tmp_path, small_clip):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")
    started = time.monotonic()
    done = streamer("run", small_clip, "--jsonl", tmp_path / "a.jsonl", env=env)
    assert done.returncode == 1, done.stderr
    assert "ViT-B/32" in done.stderr and "--weights random" in done.stderr
    assert "--weights PATH" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "a.jsonl").exists()  # no half-made output from a run that never began


@contextlib.contextmanager
def double_in_a_thread(**knobs) -> Iterator[LmStudioDouble]:
    """The LM Studio double served from its own event loop on a thread, for a `streamer`
    subprocess to talk to while the test polls its counters."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    double = LmStudioDouble(**knobs)
    asyncio.run_coroutine_threadsafe(double.start(), loop).result(10)
    try:
        yield double
    finally:
        asyncio.run_coroutine_threadsafe(double.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class StderrReader:
    """Collects a process's stderr on a thread, so the test can wait for a line while the
    progress bar keeps writing."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.chunks: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for chunk in iter(lambda: pipe.read(1), ""):
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def wait_for(self, words: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while words not in self.text:
            assert time.monotonic() < deadline, f"no {words!r} within {timeout} s: {self.text}"
            time.sleep(0.05)

    def finish(self) -> str:
        self._thread.join(30)
        return self.text


@pytest.mark.slow
def test_second_sigint_aborts_a_graceful_stop_that_waits_and_still_closes_the_files(
    tmp_path, long_clip
):
    """The first Ctrl-C starts the graceful stop, which here must wait (the webhook's flush,
    5 s) for an alert a receiver took and never answers; the second aborts it at once. The
    abort says so, prints no summary of a finished stop, and still leaves every file closed
    and readable. (A pending LLM caption no longer holds a stop: it takes the tags'.)"""
    out = tmp_path / "a.mp4"
    outputs = ["-o", out, "--srt", tmp_path / "a.srt", "--jsonl", tmp_path / "a.jsonl"]
    held: list[socket.socket] = []
    silent = socket.create_server(("127.0.0.1", 0))  # takes the POST, never answers it
    port = silent.getsockname()[1]
    taker = threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True)
    taker.start()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", long_clip, *outputs, *TINY, "--no-llm",
             "--alert", "anything", "--alert-threshold", "-1",
             "--webhook", f"http://127.0.0.1:{port}/hook"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stderr = StderrReader(proc)
        taker.join(90)  # the alert's POST is in flight, and will get no answer
        assert held and proc.poll() is None, stderr.text
        proc.send_signal(signal.SIGINT)
        stderr.wait_for("SIGINT: stopping, finishing outputs (again to abort)", 30)
        time.sleep(1.0)
        assert proc.poll() is None  # the graceful stop is waiting for the webhook
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        text = stderr.finish()
        proc.stdout.close()
        proc.stderr.close()
    finally:
        for conn in held:
            conn.close()
        silent.close()
    assert proc.returncode == 130, text
    assert "streamer: aborted; outputs closed with what was written" in text
    assert "stopped early" not in text  # no summary: the graceful stop never finished
    frames = int(video_stream(ffprobe(out))["nb_read_frames"])
    assert 0 < frames < 132 * 6
    records = read_jsonl(tmp_path / "a.jsonl")  # every line a whole record
    assert any(r["type"] == "alert" for r in records)
    captions = [r for r in records if r["type"] == "caption"]
    assert [text for _, _, text in parse_srt((tmp_path / "a.srt").read_text())] == [
        c["text"] for c in captions
    ]


@pytest.mark.slow
def test_sources_file_adds_named_inputs(tmp_path, small_clip):
    listing = tmp_path / "cams.txt"
    listing.write_text(f"# two cameras\nfront={small_clip}\n\nback={small_clip}  # the yard\n")
    done = streamer("run", "--sources", listing, "--jsonl", tmp_path / "{stream}.jsonl",
                    "--no-llm", *TINY)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "front.jsonl").exists() and (tmp_path / "back.jsonl").exists()
    empty = tmp_path / "none.txt"
    empty.write_text("# nothing\n")
    done = streamer("run", "--sources", empty, "--jsonl", tmp_path / "x.jsonl")
    assert done.returncode == 2 and "no inputs in" in done.stderr


@pytest.mark.slow
def test_sigterm_during_a_live_run_finalises_every_output_and_exits_143(tmp_path, small_clip):
    """A file played as a live camera (`--live`), stopped as a service manager stops it."""
    out = tmp_path / "live.mp4"
    outputs = ["-o", out, "--srt", tmp_path / "a.srt", "--vtt", tmp_path / "a.vtt",
               "--jsonl", tmp_path / "a.jsonl"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", f"cam={small_clip}", "--live", *outputs, *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        (tmp_path / "a.jsonl").exists() and (tmp_path / "a.jsonl").stat().st_size > 0
    ):
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    frames = int(video_stream(ffprobe(out))["nb_read_frames"])
    assert frames > 0
    records = read_jsonl(tmp_path / "a.jsonl")  # every line parses: none cut short
    assert any(r["type"] == "analysis" for r in records)
    parse_srt((tmp_path / "a.srt").read_text())
    parse_vtt((tmp_path / "a.vtt").read_text())


@pytest.mark.slow
def test_a_live_run_whose_stderr_nobody_reads_still_ends_on_sigterm(tmp_path, long_clip):
    """Its stderr on a pipe that is never read (a service manager's, a script's): once the
    pipe is full the run goes on, drops log lines, and SIGTERM still ends it with 143."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)  # the smallest pipe: full within seconds
    jsonl = tmp_path / "a.jsonl"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "-v", "run", f"cam={long_clip}", "--live",
             "--status-every", "0.1", "--jsonl", jsonl, "-o", tmp_path / "a.mp4", *TINY],
            stdout=subprocess.DEVNULL, stderr=write_end,
        )  # fmt: skip
        os.close(write_end)
        deadline = time.monotonic() + 60
        while _unread(read_end) < 3500:  # as full as whole lines make it: writes would block
            assert time.monotonic() < deadline and proc.poll() is None, "the pipe never filled"
            time.sleep(0.1)
        records = len(read_jsonl(jsonl)) if jsonl.exists() else 0
        time.sleep(2.0)
        assert len(read_jsonl(jsonl)) > records, "the run stopped moving on a full stderr"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        os.close(read_end)
    assert int(video_stream(ffprobe(tmp_path / "a.mp4"))["nb_read_frames"]) > 0
    assert any(r["type"] == "analysis" for r in read_jsonl(jsonl))


def _unread(fd: int) -> int:
    """Bytes waiting in a pipe's read end."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["run", "clip.mp4", "-v"], 1, 0),  # after the command, where people put it
        (["-v", "run", "clip.mp4"], 1, 0),
        (["run", "clip.mp4", "-qq"], 0, 2),
        (["encoders", "list", "--verbose"], 1, 0),
        (["run", "clip.mp4"], 0, 0),
    ],
)
def test_verbose_and_quiet_go_before_or_after_the_command(argv, verbose, quiet) -> None:
    from streamer.cli.main import build_parser

    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)
