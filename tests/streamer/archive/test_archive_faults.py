"""The archive under a full disk, on a real live run: it stops writing and says so on every
status surface (the console's status table, /api/status, /metrics, the page's events, each
stream's JSON Lines), while the stream and the other outputs go on and stay valid.

The disk fills in-process (the one fake this suite allows, for faults): from a moment on, the
index's commits and the recorder's catalogue appends raise `OSError(ENOSPC)`, as they would on
a full disk. A real full disk (RLIMIT_FSIZE) is what `test_recordings` and the outputs' fault
tests use; here it would stop the other outputs too, which this test wants to see go on."""

from __future__ import annotations

import asyncio
import errno
import json
import threading

import aiohttp
import pytest
from live_helpers import wait_until
from media import ffprobe, read_jsonl, video_stream
from prometheus_client.parser import text_string_to_metric_families

from streamer import AnalysisConfig, OutputConfig, RunConfig, run_pipeline
from streamer.archive import _segment_log
from streamer.archive.index import MomentTable
from streamer.archive.options import ArchiveConfig
from streamer.config import ServeConfig
from streamer.watch.web import WebViewer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def _fill_the_disk_on(full: threading.Event, monkeypatch) -> None:
    """Once `full` is set, the index's commits and the recorder's catalogue fail as on a full
    disk (a recorder then stops at its next segment)."""
    add, append = MomentTable.add, _segment_log.append_event

    def no_room() -> OSError:
        return OSError(errno.ENOSPC, "No space left on device")

    def add_or_fail(self, moments):
        if full.is_set():
            raise no_room()
        return add(self, moments)

    def append_or_fail(folder, event):
        if full.is_set():
            raise no_room()
        return append(folder, event)

    monkeypatch.setattr(MomentTable, "add", add_or_fail)
    monkeypatch.setattr(_segment_log, "append_event", append_or_fail)


async def _events(response, wanted) -> list[tuple[str, dict]]:
    """Server-Sent Events from `response` until `wanted(events)` holds."""
    events: list[tuple[str, dict]] = []
    kind, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            events.append((kind, json.loads(data)))
            kind, data = "message", ""
            if wanted(events):
                break
    return events


def _stopped(archive: dict) -> bool:
    return archive["state"] == "failed" and archive["recordings"]["door"]["state"] == "failed"


def _sample(metrics: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name}{labels}")


async def test_a_full_disk_stops_the_archive_and_every_surface_says_so_while_the_stream_goes_on(
    tmp_path, rtsp_server, tiny_encoder, monkeypatch, capfd
):
    full = threading.Event()
    _fill_the_disk_on(full, monkeypatch)
    arch, jsonl, video = tmp_path / "arch", tmp_path / "a.jsonl", tmp_path / "out.mp4"
    viewer = WebViewer(ServeConfig(port=0))
    config = RunConfig(
        input=f"door={rtsp_server.url('cam2')}", status_every=0.5,
        # A still pattern: its rows go to the index once HOLD_ROWS wait (no new caption
        # settles them), so a row of every analysed frame, 12 a second, makes them go soon.
        analysis=AnalysisConfig(analyze_fps=12.0),
        outputs=OutputConfig(video=str(video), jsonl=str(jsonl), preset="ultrafast"),
        archive=ArchiveConfig(str(arch), segment_s=1.0, index_every_s=0.05),
    )  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, progress=True, observers=[viewer])
    )
    try:
        await wait_until(lambda: viewer.url is not None or run.done(), 60, "the viewer")
        archive = lambda: viewer.status()["archive"]  # noqa: E731
        delivered = lambda: viewer.status()["streams"][0]["frames"]["delivered"]  # noqa: E731
        await wait_until(lambda: archive()["moments"]["written"] > 0 or run.done(), 30,
                         "a first batch of moments written")  # fmt: skip
        healthy = archive()
        full.set()
        await wait_until(lambda: _stopped(archive()) or run.done(), 30, "the archive stopped")
        at_fault, lines_at_fault = delivered(), len(read_jsonl(jsonl))
        await asyncio.sleep(3.0)  # the stream goes on
        async with aiohttp.ClientSession() as session:
            async with session.get(viewer.url + "api/status") as response:
                status = await response.json()
            async with session.get(viewer.url + "metrics") as response:
                metrics = await response.text()
            async with session.get(viewer.url + "events") as response:  # with the history
                events = await _events(response, lambda e: any(
                    kind == "archive" and _stopped(data) for kind, data in e))  # fmt: skip
    finally:
        stop.set()
        summary = await asyncio.wait_for(run, 60)
    # Healthy first, then stopped: the index and the recording, each saying why.
    assert healthy["state"] == "ok" and healthy["recordings"]["door"]["state"] == "recording"
    stopped = status["archive"]
    assert _stopped(stopped) and "No space left on device" in stopped["error"]
    assert "the disk is full" in stopped["recordings"]["door"]["detail"]
    assert stopped["moments"]["lost"] > 0 and stopped["moments"]["queued"] == 0
    assert _sample(metrics, "streamer_archive_up") == 0
    assert _sample(metrics, "streamer_archive_state", state="failed") == 1
    assert _sample(metrics, "streamer_archive_rows_lost_total") == pytest.approx(
        stopped["moments"]["lost"], abs=50)  # fmt: skip
    assert _sample(metrics, "streamer_recording_state", stream="door", state="failed") == 1
    assert _sample(metrics, "streamer_recording_bytes_total", stream="door") > 0
    (event,) = [d for k, d in events if k == "archive" and _stopped(d)]
    assert "No space left on device" in event["error"]
    # The stream and its other outputs went on after the disk filled, and stay valid.
    stream = status["streams"][0]
    assert stream["state"] == "online" and stream["frames"]["delivered"] > at_fault + 25
    records = read_jsonl(jsonl)  # every line whole JSON
    assert len(records) > lines_at_fault
    noted = [r for r in records if r["type"] == "archive"]
    assert noted and noted[-1]["state"] == "failed" and noted[-1]["stream"] == "door"
    assert noted[-1]["recording"]["state"] == "failed"
    assert int(video_stream(ffprobe(video))["nb_read_frames"]) >= summary.frames - 2
    table = capfd.readouterr().err
    assert f"archive {arch}: FAILED" in table and "door failed" in table
    # The index and the recording stopped for one cause: each status line says it once.
    lines = [line for line in table.splitlines() if f"archive {arch}: FAILED" in line]
    assert any("door failed" in line for line in lines)
    for line in lines:
        said = sum(line.count(words) for words in ("No space left on device", "disk is full"))
        assert said == 1, line
