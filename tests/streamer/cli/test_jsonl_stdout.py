"""`--jsonl -`: the records on standard output, for a pipe (`| jq`), every stream's lines whole."""

import json
import os
import subprocess
import sys

import pytest
from media import ffprobe, parse_srt, video_stream

pytestmark = pytest.mark.integration

TINY = ["--model", "tiny", "--weights", "random", "--preset", "ultrafast", "--no-llm"]


def test_two_streams_write_whole_json_lines_to_stdout_and_nothing_else(tmp_path, small_clip):
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run", f"door={small_clip}", f"yard={small_clip}",
         "--jsonl", "-", "--analyze-fps", "all", *TINY],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]  # each line whole JSON
    analyses = [r for r in records if r["type"] == "analysis"]
    assert {r["stream"] for r in analyses} == {"door", "yard"}
    for name in ("door", "yard"):  # every frame of each 50-frame clip, in order
        assert [r["frame"] for r in analyses if r["stream"] == name] == list(range(50))
    assert "streamer: done" in done.stderr and "streamer: done" not in done.stdout
    assert list(tmp_path.iterdir()) == []  # no file named '-'


def test_a_reader_that_goes_away_stops_the_run_with_a_message_and_valid_outputs(
    tmp_path, long_clip
):
    """`streamer run … --jsonl - | head -1`: the closed pipe ends the run (as a full disk
    would), says why, and the video written so far still plays."""
    video, srt = tmp_path / "a.mp4", tmp_path / "a.srt"
    with subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", long_clip, "-o", video, "--srt", srt,
         "--jsonl", "-", *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        # A file's analysis record is written when its frame's turn to be written comes: once
        # frame 13's is read, frames 0-12 are in the video.
        for line in proc.stdout:
            record = json.loads(line)
            assert record["stream"] == "long"
            if record.get("frame", 0) >= 13:
                break
        proc.stdout.close()  # the reader ends, as `head` does
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == 1, stderr
    assert "the program reading standard output has ended" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert int(video_stream(ffprobe(video))["nb_read_frames"]) >= 13
    parse_srt(srt.read_text())


def test_a_first_int8_run_keeps_its_calibration_progress_off_stdout(tmp_path, small_clip):
    """NNCF draws progress bars on standard output while it calibrates: they go to stderr."""
    pytest.importorskip("nncf", reason="the cpu extra (pip install openvino nncf)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # nothing exported yet
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run", str(small_clip), "--jsonl", "-", "--int8",
         "--backend", "openvino", *TINY],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "quantising clip 'tiny' to int8" in done.stderr  # calibrated in this run
    records = [json.loads(line) for line in done.stdout.splitlines()]  # each line whole JSON
    assert [r["frame"] for r in records if r["type"] == "analysis"]
