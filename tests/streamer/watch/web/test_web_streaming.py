"""The viewer's live parts on real runs: the event stream delivers captions as the pipeline
makes them, MJPEG and snapshots carry the overlaid frames, and clients that stop reading cost
the pipeline nothing."""

import asyncio
import contextlib
import io
import json

import aiohttp
import pytest
from live_helpers import wait_until
from media import read_jsonl
from PIL import Image
from web_helpers import port_of, run_and_check, stalled_client, wait_for_url

from streamer import CaptionPolicy, OutputConfig, RunConfig, run_pipeline
from streamer.analysis.alerts import AlertCleared
from streamer.config import ServeConfig
from streamer.core.events import Observer
from streamer.llm import LlmConfig
from streamer.watch.web import ViewerLimits, WebViewer
from streamer.watch.web._events import EventHub

pytestmark = pytest.mark.integration


async def _events(response, wanted, limit: int = 200) -> list[tuple[str, dict]]:
    """Server-Sent Events from `response` until `wanted(events)` holds (at most `limit`)."""
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
            if wanted(events) or len(events) >= limit:
                break
    return events


def _captions(events) -> list[dict]:
    return [data for kind, data in events if kind == "caption"]


async def test_events_mjpeg_and_snapshots_while_a_live_run_plays(
    tmp_path, long_clip, tiny_encoder, double
):
    viewer = WebViewer(ServeConfig(port=0))
    config = RunConfig(
        input=f"cam={long_clip}", live=True, outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")),
        llm=LlmConfig(url=double.url), captions=CaptionPolicy(0.5, 0.5, 1e-9),
    )  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                           observers=[viewer]))  # fmt: skip
    try:
        base = await wait_for_url(viewer)
        assert not viewer.wants_frames  # nobody watches: no frame is drawn for the viewer
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "events") as response:
                assert response.headers["Content-Type"] == "text/event-stream"
                events = await _events(response, lambda e: len(_captions(e)) >= 3)
            first, *later = _captions(events)
            headers = {"Last-Event-ID": str(first["id"])}
            async with session.get(base + "events", headers=headers) as response:
                replayed = await _events(response, lambda e: len(_captions(e)) >= 2)
            async with session.get(base + "streams/cam/mjpeg") as response:
                assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
                assert viewer.wants_frames
                reader = aiohttp.MultipartReader.from_response(response)
                part = await reader.next()
                assert part.headers["Content-Type"] == "image/jpeg"
                frame = Image.open(io.BytesIO(await part.read()))
            async with session.get(base + "streams/cam/snapshot.jpg") as response:
                assert response.status == 200
                snapshot = Image.open(io.BytesIO(await response.read()))
    finally:
        stop.set()
        summary = await asyncio.wait_for(run, 60)
    assert events[0][0] == "status" and events[0][1]["streams"][0]["name"] == "cam"
    assert [c["text"] for c in _captions(events)][:1] == ["Caption number 1."]
    assert all(c["source"] == "llm" and c["stream"] == "cam" for c in _captions(events))
    assert [c["id"] for c in _captions(replayed)] == [c["id"] for c in later[:2]]
    assert frame.format == snapshot.format == "JPEG"
    assert frame.size == snapshot.size == (1280, 720)
    written = [r["text"] for r in read_jsonl(tmp_path / "a.jsonl") if r["type"] == "caption"]
    assert [c["text"] for c in _captions(events)] == written[:3]
    assert summary.frames > 0


async def test_clients_that_never_read_do_not_hold_up_a_file_run(
    tmp_path, small_clip, tiny_encoder
):
    viewer = WebViewer(ServeConfig(port=0))
    clients = []

    class Connect(Observer):  # started after the viewer: it serves by then
        async def start(self, run) -> None:
            port = port_of(viewer)
            clients.append(await stalled_client(port, "/streams/clip/mjpeg"))
            clients.append(await stalled_client(port, "/events"))
            await wait_until(lambda: sum(viewer.status()["clients"].values()) == 2, 10, "both")

    async def check(viewer):
        return viewer.status()["clients"], viewer.wants_frames

    config = RunConfig(input=f"clip={small_clip}", outputs=OutputConfig(jsonl=str(tmp_path / "a")))
    try:
        summary, (connected, watched) = await asyncio.wait_for(
            run_and_check(config, tiny_encoder, viewer, check, after=(Connect(),)), 120
        )
    finally:
        for sock in clients:
            sock.close()
    assert connected == {"mjpeg": 1, "events": 1} and watched
    assert summary.frames == 50 and summary.streams[0].dropped == 0


async def test_a_client_that_stops_reading_is_disconnected_and_the_run_goes_on(
    tmp_path, long_clip, tiny_encoder
):
    viewer = WebViewer(ServeConfig(port=0), ViewerLimits(write_timeout_s=0.5))
    config = RunConfig(input=f"cam={long_clip}", live=True,
                       outputs=OutputConfig(jsonl=str(tmp_path / "a.jsonl")))  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                           observers=[viewer]))  # fmt: skip
    sock = None
    try:
        await wait_for_url(viewer)
        sock = await stalled_client(port_of(viewer), "/streams/cam/mjpeg")
        await wait_until(lambda: 'reason="stalled"} 1' in viewer.metrics(), 40, "stalled cut")
        stream = viewer.run.streams[0]
        delivered = stream.stats.delivered
        await wait_until(lambda: stream.stats.delivered > delivered + 10, 10, "frames go on")
        assert viewer.status()["clients"]["mjpeg"] == 0 and not viewer.wants_frames
        async with aiohttp.ClientSession() as session, session.get(viewer.url + "healthz") as r:
            assert r.status == 200
    finally:
        stop.set()
        if sock is not None:
            sock.close()
        summary = await asyncio.wait_for(run, 60)
    assert summary.frames > 0


async def test_clients_of_a_stream_that_draws_no_more_frames_are_freed_when_they_leave(
    tmp_path, long_clip, small_clip, tiny_encoder
):
    # A stream that has ended sends nothing, so a handler waiting for its next frame never
    # wrote and never noticed its client had gone: 32 page loads and the viewer refused all.
    viewer = WebViewer(ServeConfig(port=0), ViewerLimits(max_clients=3))
    config = RunConfig(input=(f"cam={long_clip}", f"short={small_clip}"), live=True,
                       outputs=OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl")))  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                           observers=[viewer]))  # fmt: skip
    try:
        base = await wait_for_url(viewer)
        short = next(s for s in viewer.run.streams if s.name == "short")
        await wait_until(lambda: short.source.status.state == "ended", 60, "short ended")
        async with aiohttp.ClientSession() as session:
            for _ in range(5):  # more than max_clients: each left its place to the next
                with contextlib.suppress(TimeoutError):
                    async with session.get(base + "streams/short/mjpeg") as response:
                        assert response.status == 200
                        await asyncio.wait_for(response.content.read(1), 0.3)
                await wait_until(lambda: viewer.status()["clients"]["mjpeg"] == 0, 5, "freed")
            async with session.get(base + "streams/cam/mjpeg") as response:
                assert response.status == 200  # not "503: too many viewers"
    finally:
        stop.set()
        summary = await asyncio.wait_for(run, 60)
    assert summary.frames > 0


def test_an_event_client_too_far_behind_is_dropped_with_its_queue():
    hub = EventHub(history=10, queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    for n in range(3):
        hub.publish(f"data: {n}\n\n".encode())
        fast.queue.get_nowait()
    assert slow.queue.qsize() == 3 and hub.overflows == 0
    hub.publish(b"data: 3\n\n")
    assert slow.queue.qsize() == 1 and slow.queue.get_nowait() is None  # buffer gone: close
    assert hub.clients == {fast} and hub.overflows == 1
    assert fast.queue.get_nowait() == b"data: 3\n\n"


def test_an_alert_that_clears_reaches_the_page_as_its_own_event_after_the_alert():
    viewer = WebViewer(ServeConfig(port=0))
    hub = viewer._events  # what /events and its replay serve
    client = hub.subscribe()
    offline = AlertCleared("door", 20.0, 1_700_000_007.5, "a fox", float("nan"), 0.27, 500, 12.5,
                           "offline")  # fmt: skip
    viewer.alert_cleared("door", offline)
    message = client.queue.get_nowait().decode()
    assert message.startswith("id: 1\nevent: alert_cleared\ndata: ")
    record = json.loads(message.split("data: ", 1)[1])
    assert record == {"id": 1, "stream": "door", "time": 20.0, "wall": 1_700_000_007.5,
                      "query": "a fox", "score": None, "threshold": 0.27, "frame_index": 500,
                      "fired": 12.5, "reason": "offline"}  # fmt: skip
    assert hub.records("alert_cleared", "door") == [record] and hub.records("alert") == []
    assert b"event: alert_cleared" in hub.replay(0)  # a page that reconnects gets it too


async def test_healthz_says_degraded_while_a_camera_is_down_and_needs_no_token(
    tmp_path, long_clip, tiny_encoder
):
    # A container's health check sends no token; it needs to see more than "the process is up".
    viewer = WebViewer(ServeConfig(port=0, token="s3cret"))
    config = RunConfig(input=(f"cam={long_clip}", "door=rtsp://127.0.0.1:9/stream"), live=True,
                       outputs=OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl")))  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop,
                                           observers=[viewer]))  # fmt: skip
    try:
        await wait_for_url(viewer)
        door = next(s for s in viewer.run.streams if s.name == "door")
        cam = next(s for s in viewer.run.streams if s.name == "cam")
        await wait_until(lambda: door.source.status.state == "offline", 30, "door offline")
        await wait_until(lambda: cam.stats.delivered > 0, 30, "cam's frames")
        async with aiohttp.ClientSession() as session, session.get(viewer.url + "healthz") as r:
            assert r.status == 200
            health = await r.json()
    finally:
        stop.set()
        await asyncio.wait_for(run, 60)
    assert health == {"status": "degraded", "streams": 2, "states": {"offline": 1, "playing": 1}}
