"""The use-case examples run as a user runs them: against real sources, outside the repo."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from live_helpers import free_port
from media import ffprobe, parse_srt, read_jsonl, video_stream

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _example(name, *args, cwd, env, timeout=240) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_webcam_captioning_example_captions_a_live_source_and_serves_it(
    tmp_path, small_clip, user_env
):
    """The clip stands in for the camera (played live, at its frame rate); no LLM server is
    listening, so the captions come from the tags, as the example promises."""
    done = _example("webcam_captions.py", small_clip, "--llm-url", "http://127.0.0.1:9/v1",
                    "--seconds", "20", "--port", free_port(), "--weights", "random",
                    cwd=tmp_path, env=user_env)  # fmt: skip
    assert "watch at http://127.0.0.1:" in done.stdout and "frames shown" in done.stdout
    cues = parse_srt((tmp_path / "captions.srt").read_text())
    assert cues and all(text for _, _, text in cues)
    records = read_jsonl(tmp_path / "captions.jsonl")
    assert any(r["type"] == "analysis" for r in records)


@pytest.mark.slow
def test_rtsp_surveillance_example_records_cameras_and_fires_alerts(
    tmp_path, rtsp_server, user_env
):
    """Two real RTSP cameras; a threshold of -1 makes every analysed frame match (random
    weights carry no meaning), so the alert path runs end to end."""
    cams = [f"door={rtsp_server.url('cam1')}", f"yard={rtsp_server.url('cam2')}"]
    args = [*cams, "--alert", "a person at the door", "--threshold", "-1", "--port", free_port(),
            "--out", tmp_path / "rec", "--seconds", "10", "--weights", "random",
            "--search", "a person at the door"]  # fmt: skip
    done = _example("rtsp_surveillance.py", *args, cwd=tmp_path, env=user_env)
    # It remembered: both cameras recorded into segments, their moments indexed and searched.
    found = [line for line in done.stdout.splitlines() if line.startswith("found ")]
    assert found and {line.split()[1] for line in found} <= {"door", "yard"}, done.stdout
    for name in ("door", "yard"):
        segments = list((tmp_path / "rec" / "archive" / "recordings" / name).glob("*.mp4"))
        assert segments and video_stream(ffprobe(segments[0]))["codec_name"] == "h264"
    for name in ("door", "yard"):
        assert f"{name}: " in done.stdout
        frames = int(video_stream(ffprobe(tmp_path / "rec" / f"{name}.mp4"))["nb_read_frames"])
        assert frames > 25
        records = read_jsonl(tmp_path / "rec" / f"{name}.jsonl")
        alerts = [r for r in records if r["type"] == "alert"]
        assert alerts and alerts[0]["query"] == "a person at the door", json.dumps(records[:3])


@pytest.mark.slow
def test_control_api_example_adds_changes_and_removes_a_camera_of_a_running_run(
    tmp_path, rtsp_server, user_env
):
    """Two real RTSP cameras; the second is added, changed and removed over HTTP. A threshold
    of -1 makes every analysed frame match (random weights), so both of its alerts fire: the
    one it was added with, then the one that replaced it."""
    env = dict(user_env, PYTHONPATH=str(REPO))  # this checkout's streamer runs the API
    args = [f"door={rtsp_server.url('cam1')}", f"yard={rtsp_server.url('cam2')}",
            "--port", free_port(), "--threshold", "-1", "--step", "4", "--out", tmp_path / "out",
            "--model", "tiny", "--weights", "random"]  # fmt: skip
    done = _example("control_api.py", *args, cwd=tmp_path, env=env)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("running at http://127.0.0.1:") and lines[1].startswith("  door: ")
    assert "added yard at 1 frame/s, alerting on 'a person at the door'" in lines
    listed = [line for line in lines if line.startswith("  yard: ")]
    assert len(listed) == 2 and "at 1.0/s" in listed[0] and "at 4.0/s" in listed[1], lines
    assert "alerts: a delivery van" in listed[1]
    removed = next(line for line in lines if line.startswith("removed yard: "))
    assert int(removed.split()[2]) > 0
    assert lines[-1] == "yard's alerts: 2 (a delivery van, a person at the door)", lines
    records = read_jsonl(tmp_path / "out" / "door.jsonl")  # the first ran on all along
    assert sum(r["type"] == "analysis" for r in records) > 10
