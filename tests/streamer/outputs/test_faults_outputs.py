"""Outputs under faults: a full disk mid-run, a process killed outright.

A full disk is made real with the file size limit (RLIMIT_FSIZE) of the streamer process:
the kernel fails its writes with EFBIG exactly as it fails them with ENOSPC when a disk
fills, without needing a small filesystem (or root) on the test machine.
"""

import json
import resource
import signal
import subprocess
import sys
import time

import av
import pytest
from media import parse_srt, parse_vtt

TINY = ["--model", "tiny", "--weights", "random", "--preset", "ultrafast", "--no-llm",
        "--no-progress"]  # fmt: skip


def _limited(max_bytes: int):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return set_limit


def _streamer(*args, limit: int, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamer", "run", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, preexec_fn=_limited(limit),
    )  # fmt: skip


def _decodable_frames(path) -> int:
    count = 0
    with av.open(str(path)) as container:
        try:
            for _ in container.decode(video=0):
                count += 1
        except av.FFmpegError:  # the torn last fragment
            pass
    return count


def _complete_jsonl(path) -> list[dict]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "a torn last line"
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["mp4"])
def test_disk_full_mid_run_says_so_and_what_was_written_stays_valid(tmp_path, sample_clip, ext):
    outputs = ["-o", tmp_path / f"a.{ext}", "--fragmented", "--srt", tmp_path / "a.srt",
               "--vtt", tmp_path / "a.vtt", "--jsonl", tmp_path / "a.jsonl"]  # fmt: skip
    done = _streamer(sample_clip, *outputs, *TINY, limit=2_500_000)
    assert done.returncode == 1, done.stderr
    assert "over the size limit" in done.stderr and "Fix: free space" in done.stderr
    assert "this MP4 plays up to its last fragment" in done.stderr
    assert "Traceback" not in done.stderr
    # The video plays up to its last complete fragment (a keyframe at least every 2 s).
    assert _decodable_frames(tmp_path / f"a.{ext}") >= 24
    records = _complete_jsonl(tmp_path / "a.jsonl")
    assert records and all(r["type"] in ("analysis", "caption") for r in records)
    parse_srt((tmp_path / "a.srt").read_text())
    parse_vtt((tmp_path / "a.vtt").read_text())


@pytest.mark.slow
def test_a_full_disk_says_once_that_a_plain_mp4_will_not_play_and_what_would(tmp_path, sample_clip):
    # A file's MP4 is plain by default: its index goes at its end, which a full disk keeps
    # from being written. The message says so, and names --fragmented, once.
    outputs = ["-o", tmp_path / "a.mp4", "--jsonl", tmp_path / "a.jsonl"]
    done = _streamer(sample_clip, *outputs, *TINY, limit=2_500_000)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("video output") == 1, done.stderr  # not again on finishing
    assert "this MP4 will not play" in done.stderr and "--fragmented" in done.stderr
    assert _complete_jsonl(tmp_path / "a.jsonl")


@pytest.mark.slow
def test_a_full_disk_never_leaves_a_torn_json_line(tmp_path, sample_clip):
    """The JSON Lines file is the one that fills: it ends after its last whole record."""
    path = tmp_path / "a.jsonl"
    done = _streamer(
        sample_clip, "--jsonl", path, "--analyze-fps", "all", *TINY, limit=6_000, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "JSON Lines output" in done.stderr and "over the size limit" in done.stderr
    records = _complete_jsonl(path)
    assert len(records) > 3 and path.stat().st_size <= 6_000


@pytest.mark.slow
def test_a_live_recording_killed_outright_still_plays(tmp_path, small_clip):
    """kill -9 gives no chance to finish the file: live MP4s are fragmented by default."""
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", f"cam={small_clip}", "--live", "-o", out,
         *TINY],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    # A fragment is written at each keyframe (every 2 s of live video): wait for the second.
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 60_000):
        time.sleep(0.1)
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert _decodable_frames(out) >= 25


@pytest.mark.slow
def test_a_small_live_recording_killed_outright_loses_at_most_its_last_seconds(tmp_path, make_clip):
    """A low-bitrate camera's fragments are small: they must reach the file as they are made,
    not wait in a 256-KiB write buffer (a 320x240 camera's file was empty 17 s in)."""
    clip = make_clip("small_camera.mp4", audio_codec=None, seconds=20)
    out, jsonl = tmp_path / "live.mp4", tmp_path / "live.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", f"cam={clip}", "--live", "-o", out,
         "--jsonl", jsonl, *TINY],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline, seconds = time.monotonic() + 90, 0.0
    while time.monotonic() < deadline and seconds < 7.0:
        time.sleep(0.2)
        lines = jsonl.read_text().splitlines() if jsonl.exists() else []
        times = [json.loads(line).get("pts", 0) for line in lines if '"analysis"' in line]
        seconds = max(times, default=0.0)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert seconds >= 7.0, "the run did not get 7 s in"
    # README: a live recording killed outright plays to its last fragment, <= 2 s lost.
    assert _decodable_frames(out) >= (7.0 - 2.5) * 25
