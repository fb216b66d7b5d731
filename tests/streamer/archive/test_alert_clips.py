"""Alert clips (`streamer.archive.alert_clips`): every alert of a run with `--archive` keeps a
clip around it, cut from a real file or from a real RTSP stream's recording while the run goes
on; the alert's JSON Lines record and webhook body carry its path. Checked with ffprobe."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from live_helpers import wait_until
from media import ffprobe, read_jsonl, video_stream
from webhook_receiver import Receiver

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.analysis.alerts import AlertRule
from streamer.archive.alert_clips import clip_name
from streamer.archive.options import ArchiveConfig
from streamer.errors import ConfigError

GOP_S = 1.0  # both media below have a key frame every second: a copied clip starts at one


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory, sample_clip) -> Path:
    """The sample clip (5.28 s, 25 fps, with its audio) at 320×180, a key frame every second."""
    out = tmp_path_factory.mktemp("clips") / "gate.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(sample_clip), "-vf", "scale=320:180",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "copy",
                    str(out)], check=True)  # fmt: skip
    return out


def _catalogue(root: Path) -> dict[str, dict]:
    lines = (root / "clips" / "clips.jsonl").read_text().splitlines()
    return {line["clip"]: line for line in map(json.loads, lines)}


def _duration(path: Path) -> float:
    return float(ffprobe(path)["format"]["duration"])


def test_a_clip_is_named_by_its_time_and_query_safely():
    live = clip_name("door", "A person at the door!", wall=1_735_732_800.1234)
    assert live == "clips/door/20250101T120000.123Z-a-person-at-the-door.mp4"
    assert clip_name("gate", "a van", media_time=3723.5) == "clips/gate/01h02m03.500s-a-van.mp4"
    odd = clip_name("../etc", "../../passwd\n<b>", media_time=0.0)
    assert odd == "clips/etc/00h00m00.000s-passwd-b.mp4"
    assert clip_name("..", "...", media_time=1.0) == "clips/stream/00h00m01.000s-alert.mp4"
    assert len(clip_name("cam", "x" * 500, wall=0.0).rsplit("/", 1)[1]) < 80
    with pytest.raises(ValueError, match="wall time or its media time"):
        clip_name("cam", "x")


@pytest.mark.parametrize("flag", ["clip_before_s", "clip_after_s"])
def test_clip_spans_are_checked_as_durations(flag):
    assert getattr(ArchiveConfig("arch"), flag) in (5.0, 10.0)
    with pytest.raises(ConfigError, match="duration"):
        ArchiveConfig("arch", **{flag: 0.0})


@pytest.mark.slow
async def test_a_files_alerts_keep_clips_cut_from_the_file(tmp_path, gop_clip, tiny_encoder):
    arch = tmp_path / "arch"
    rule = AlertRule("a red van", threshold=-1.0, frames=1, cooldown_s=2.0)  # fires at 0, 2, 4 s
    async with Receiver() as receiver:
        config = RunConfig(
            input=f"gate={gop_clip}", outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
            alerts=(rule,), webhook=receiver.url,
            archive=ArchiveConfig(str(arch), clip_before_s=1.0, clip_after_s=1.5),
        )  # fmt: skip
        await run_pipeline(config, encoder=tiny_encoder)
    alerts = [r for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "alert"]
    assert [a["pts"] for a in alerts] == [0.0, 2.0, 4.0]
    assert [a["clip"] for a in alerts] == [
        f"clips/gate/00h00m0{t}.000s-a-red-van.mp4" for t in (0, 2, 4)
    ]
    *posted, cleared = receiver.payloads  # the alert on at the file's end is over then
    assert [p["clip"] for p in posted] == [a["clip"] for a in alerts]
    assert cleared["type"] == "alert_cleared" and cleared["reason"] == "ended"
    catalogue = _catalogue(arch)
    for alert in alerts:
        clip, when = arch / alert["clip"], alert["pts"]
        noted = catalogue[alert["clip"]]
        assert noted["state"] == "written" and noted["clock"] == "media", noted
        start, end = max(0.0, when - 1.0), min(when + 1.5, 5.28)
        assert noted["requested"] == [start, round(when + 1.5, 3)]
        assert start - GOP_S <= noted["start"] <= start and noted["end"] >= end - 0.05, noted
        assert _duration(clip) == pytest.approx(noted["end"] - noted["start"], abs=0.1)
        frames = int(video_stream(ffprobe(clip))["nb_read_frames"])
        assert frames >= (end - start) * 25 - 1, (clip, frames)
    assert not list(arch.glob("clips/gate/*.part.mp4"))


@pytest.mark.slow
async def test_live_alerts_keep_clips_cut_from_the_recording_during_the_run_and_at_its_end(
    tmp_path, rtsp_server, tiny_encoder
):
    arch, jsonl = tmp_path / "arch", tmp_path / "a.jsonl"
    # At 2 analysed frames a second: the door fires about 3 s in, its clip is cut about
    # 4 + 2.5 s later; the gate fires about 8 s in.
    door = AlertRule("a person at the door", threshold=-1.0, frames=6, cooldown_s=1000.0)
    gate = AlertRule("a van at the gate", threshold=-1.0, frames=16, cooldown_s=1000.0)
    config = RunConfig(
        input=f"door={rtsp_server.url('cam1')}", outputs=OutputConfig(jsonl=str(jsonl)),
        alerts=(door, gate),
        archive=ArchiveConfig(str(arch), segment_s=2.0, clip_before_s=2.0, clip_after_s=4.0),
    )  # fmt: skip

    def alerts() -> list[dict]:
        return [r for r in read_jsonl(jsonl) if r["type"] == "alert"] if jsonl.exists() else []

    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    try:
        # The door's clip is cut while the stream goes on, from its recording so far; the
        # run stops as soon as the gate has fired too, before its clip's span is recorded.
        cut = arch / "clips" / "clips.jsonl"
        await wait_until(lambda: run.done() or (len(alerts()) == 2 and cut.exists()), 40,
                         "the first clip and both alerts")  # fmt: skip
        assert not run.done()
        cut_at = time.time()
    finally:
        stop.set()
    await run
    first, second = alerts()
    catalogue = _catalogue(arch)
    for alert in (first, second):
        slug = alert["query"].replace(" ", "-")
        assert alert["clip"].startswith("clips/door/") and alert["clip"].endswith(f"Z-{slug}.mp4")
        noted = catalogue[alert["clip"]]
        assert noted["state"] == "written" and noted["clock"] == "wall", noted
        start, end = noted["requested"]
        assert end - start == pytest.approx(6.0)
        assert abs(start + 2.0 - alert["wall"]) < 1.0  # around the alert's frame
        # Copied from the key frame at or before the start: at most a GOP (and a frame) early.
        assert start - GOP_S - 0.1 <= noted["start"] <= start + 0.05, noted
        clip = arch / alert["clip"]
        assert _duration(clip) == pytest.approx(noted["end"] - noted["start"], abs=0.15)
        frames = int(video_stream(ffprobe(clip))["nb_read_frames"])
        assert frames >= (noted["end"] - noted["start"]) * 25 - 2, (clip, frames)
    # The door's clip waited until its recording held all of it.
    door_clip = catalogue[first["clip"]]
    assert door_clip["end"] >= door_clip["requested"][1] - 0.1 and cut_at >= door_clip["end"]
    # The gate's was cut when the run ended, from what was recorded: up to the stop.
    gate_clip = catalogue[second["clip"]]
    assert second["wall"] < gate_clip["end"] < gate_clip["requested"][1] - 0.5, gate_clip
    assert gate_clip["end"] >= cut_at - 1.0, gate_clip
