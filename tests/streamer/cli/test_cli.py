"""The `streamer` command as a user runs it: real clips, real exit codes, real files."""

import os
import signal
import subprocess
import sys
import time

import pytest
from media import ffprobe, parse_srt, parse_vtt, read_jsonl, stream_types, video_stream

pytestmark = pytest.mark.integration


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
    [(["--encoder", "nope"], "clip"), (["--encoder", "clip", "--model", "ViT-Q/99"], "ViT-B/32")],
    ids=["encoder", "model"],
)
def test_unknown_encoder_or_model_lists_valid_names(tmp_path, small_clip, args, words):
    done = streamer(
        "run", small_clip, "--jsonl", tmp_path / "a.jsonl", *args, "--weights", "random"
    )
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_truncated_input_annotates_what_decodes_and_exits_3(tmp_path, truncated_clip):
    outputs = ["-o", tmp_path / "a.mp4", "--srt", tmp_path / "a.srt"]
    done = streamer("run", truncated_clip, *outputs, *TINY)
    assert done.returncode == 3, done.stderr
    assert "input incomplete" in done.stderr and "stopped after frame" in done.stderr
    frames = int(video_stream(ffprobe(tmp_path / "a.mp4"))["nb_read_frames"])
    assert 10 < frames < 132
    assert parse_srt((tmp_path / "a.srt").read_text())


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
    frames = int(video_stream(ffprobe(out))["nb_read_frames"])
    assert 0 < frames < 132 * 6
    assert f"{frames} frames" in stderr  # the summary counts exactly what the file holds
    parse_srt((tmp_path / "a.srt").read_text())
    read_jsonl(tmp_path / "a.jsonl")


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


def test_missing_pretrained_weights_offline_fail_fast_naming_the_fixes(tmp_path, small_clip):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")
    started = time.monotonic()
    done = streamer("run", small_clip, "--jsonl", tmp_path / "a.jsonl", env=env)
    assert done.returncode == 1, done.stderr
    assert "ViT-B/32" in done.stderr and "--weights random" in done.stderr
    assert "--weights PATH" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "a.jsonl").exists()  # no half-made output from a run that never began


def test_second_sigint_aborts_but_still_closes_the_video(tmp_path, long_clip):
    out = tmp_path / "a.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", long_clip, "-o", out, *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 200_000):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert int(video_stream(ffprobe(out))["nb_read_frames"]) > 0


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
