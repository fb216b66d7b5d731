"""The whole pipeline on live RTSP streams from a real GStreamer server on loopback."""

import asyncio
import logging

import aiohttp
import pytest
from live_helpers import RtspServer, wait_until
from media import ffprobe, parse_srt, read_jsonl, video_stream
from prometheus_client.parser import text_string_to_metric_families
from servers.udp_loss_proxy import ProxyThread, UdpLossProxy

from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.analysis.alerts import AlertRule
from streamer.config import ServeConfig
from streamer.core.events import Observer
from streamer.core.retry import RetryPolicy
from streamer.sources import SourceOptions
from streamer.watch.web import WebViewer

pytestmark = pytest.mark.integration

RECONNECT = RetryPolicy(initial=0.2, cap=0.8, jitter=0.25)
FAST_RECONNECT = SourceOptions(open_timeout=2.0, read_timeout=1.0, reconnect=RECONNECT)


def _lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _outputs(tmp_path) -> OutputConfig:
    video, jsonl = str(tmp_path / "{stream}.mp4"), str(tmp_path / "{stream}.jsonl")
    return OutputConfig(video=video, jsonl=jsonl, preset="ultrafast")


async def _run_until(config, encoder, condition, timeout, what):
    """Run the pipeline until `condition()` holds, then stop it and return its summary."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=encoder, stop=stop))
    try:
        await wait_until(lambda: condition() or task.done(), timeout, what)
    finally:
        stop.set()
    return await asyncio.wait_for(task, 30)


def _states(path) -> list[str]:
    return [r["state"] for r in read_jsonl(path) if r["type"] == "status"]


class _Watch(Observer):
    """Keeps the live run, so a test can read its sources' status while it runs."""

    def __init__(self) -> None:
        self.run = None

    async def start(self, run) -> None:
        self.run = run

    def damaged(self) -> int:
        return self.run.streams[0].source.status.damaged if self.run is not None else 0


async def _damaged_served(viewer: WebViewer, stream: str) -> tuple[float, int]:
    """`streamer_damaged_total` from /metrics (read by Prometheus' parser) and `damaged` from
    /api/status, for `stream`."""
    async with aiohttp.ClientSession() as session:
        async with session.get(viewer.url + "metrics") as response:
            metrics = await response.text()
        async with session.get(viewer.url + "api/status") as response:
            status = await response.json()
    (family,) = [f for f in text_string_to_metric_families(metrics) if f.name == "streamer_damaged"]
    assert family.type == "counter" and family.documentation.startswith("Packets that did not")
    (sample,) = [s for s in family.samples if s.labels.get("stream") == stream]
    assert sample.labels["node"], sample.labels  # every per-stream series names its node
    (served,) = [s for s in status["streams"] if s["name"] == stream]
    return sample.value, served["damaged"]


async def test_two_live_streams_share_the_encoder_and_write_their_own_outputs(
    tmp_path, rtsp_server, tiny_encoder
):
    urls = (rtsp_server.url("cam1"), rtsp_server.url("cam2"))
    config = RunConfig(input=urls, outputs=_outputs(tmp_path), sources=FAST_RECONNECT)
    names = [f"127.0.0.1_{rtsp_server.port}_cam1", f"127.0.0.1_{rtsp_server.port}_cam2"]
    summary = await _run_until(
        config, tiny_encoder,
        lambda: all(_lines(tmp_path / f"{n}.jsonl") >= 5 for n in names), 30, "both analysed",
    )  # fmt: skip
    assert summary.interrupted  # live runs end by being stopped
    for stream in summary.streams:
        assert stream.name in names and stream.frames > 10 and stream.analysed >= 2
        assert stream.latency_ms[2] < 2000  # bounded, on a loaded 2-core machine
        written = int(video_stream(ffprobe(tmp_path / f"{stream.name}.mp4"))["nb_read_frames"])
        assert written == stream.frames
        assert _states(tmp_path / f"{stream.name}.jsonl")[:2] == ["connecting", "online"]
        assert stream.damaged == 0  # RTSP over TCP loses nothing: nothing counted as damaged


async def test_a_late_live_stream_has_subtitles_and_records_on_its_videos_clock(
    tmp_path, rtsp_server, tiny_encoder, slow_label_embeddings
):
    # A first run embeds its labels for seconds before the first frame; a camera added to a
    # running run begins later still. Its fragmented MP4 starts at 0: so must its cues.
    slow_label_embeddings(2.0)
    outputs = OutputConfig(video=str(tmp_path / "cam.mp4"), srt=str(tmp_path / "cam.srt"),
                           jsonl=str(tmp_path / "cam.jsonl"), preset="ultrafast")  # fmt: skip
    config = RunConfig(input=f"cam={rtsp_server.url('cam1')}", outputs=outputs,
                       sources=FAST_RECONNECT)  # fmt: skip
    jsonl = tmp_path / "cam.jsonl"
    await _run_until(
        config, tiny_encoder,
        lambda: sum('"analysis"' in line for line in _text(jsonl)) >= 8, 40, "analysed",
    )  # fmt: skip
    analyses = [r for r in read_jsonl(jsonl) if r["type"] == "analysis"]
    assert analyses[0]["pts"] < 0.5, analyses[0]  # not the 2 s the labels took
    info = ffprobe(tmp_path / "cam.mp4")
    assert abs(float(info["format"].get("start_time", 0.0))) < 0.1
    cues = parse_srt((tmp_path / "cam.srt").read_text())
    assert cues[0][0] < 0.5
    assert cues[-1][1] <= float(info["format"]["duration"]) + 0.6  # the last cue's minimum


def _text(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_server_killed_and_restarted_the_run_reconnects_and_keeps_going(
    tmp_path, own_rtsp_server, tiny_encoder
):
    url = own_rtsp_server.url("cam")
    config = RunConfig(input=url, outputs=_outputs(tmp_path), sources=FAST_RECONNECT)
    name = f"127.0.0.1_{own_rtsp_server.port}_cam"
    jsonl = tmp_path / f"{name}.jsonl"
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    try:
        await wait_until(
            lambda: "online" in _states(jsonl) if jsonl.exists() else False, 30, "online"
        )
        own_rtsp_server.kill()
        await wait_until(lambda: "offline" in _states(jsonl), 15, "offline after the kill")
        await asyncio.sleep(1.0)
        own_rtsp_server.start()
        await wait_until(lambda: _states(jsonl).count("online") >= 2, 20, "online again")
        analysed_before = sum(1 for r in read_jsonl(jsonl) if r["type"] == "analysis")
        await wait_until(
            lambda: sum(1 for r in read_jsonl(jsonl) if r["type"] == "analysis") > analysed_before,
            15, "analysis after the reconnect",
        )  # fmt: skip
    finally:
        stop.set()
    summary = await asyncio.wait_for(task, 30)
    (stream,) = summary.streams
    assert stream.reconnects >= 1
    offline = next(
        r for r in read_jsonl(jsonl) if r["type"] == "status" and r["state"] == "offline"
    )
    assert offline["offline_since"] is not None and offline["error"]
    assert int(video_stream(ffprobe(tmp_path / f"{name}.mp4"))["nb_read_frames"]) == stream.frames


class _Cleared(Observer):
    def __init__(self) -> None:
        self.cleared = []

    def alert_cleared(self, stream, cleared) -> None:
        self.cleared.append(cleared)


async def test_a_camera_that_goes_offline_turns_its_alerts_off(
    tmp_path, own_rtsp_server, tiny_encoder
):
    """Its alerts were on (every frame matches); offline, no frame says whether they still
    hold, so they clear then (not at the end of the run): a record and the observers' hook."""
    rule = AlertRule("anything", threshold=-1.0, frames=1, cooldown_s=0.2)
    config = RunConfig(input=f"cam={own_rtsp_server.url('cam')}", outputs=_outputs(tmp_path),
                       sources=FAST_RECONNECT, alerts=(rule,))  # fmt: skip
    jsonl, observer, stop = tmp_path / "cam.jsonl", _Cleared(), asyncio.Event()
    task = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[observer])
    )
    types = lambda: [r["type"] for r in read_jsonl(jsonl)] if jsonl.exists() else []  # noqa: E731
    try:
        await wait_until(lambda: "alert" in types() or task.done(), 30, "an alert")
        own_rtsp_server.kill()
        await wait_until(lambda: observer.cleared or task.done(), 15, "cleared once offline")
        assert not task.done()  # cleared while the run goes on, reconnecting
    finally:
        stop.set()
    await asyncio.wait_for(task, 30)
    records = read_jsonl(jsonl)
    (offline,) = [i for i, r in enumerate(records) if r.get("state") == "offline"][:1]
    (cleared,) = [r for r in records if r["type"] == "alert_cleared"]
    assert records.index(cleared) > offline and cleared["reason"] == "offline"
    assert cleared["query"] == "anything" and cleared["score"] is None
    fired = [r for r in records[: records.index(cleared)] if r["type"] == "alert"]
    assert cleared["fired_pts"] == fired[-1]["pts"] <= cleared["pts"]
    assert [c.reason for c in observer.cleared] == ["offline"]


async def test_a_stream_that_ends_while_others_run_turns_its_alerts_off(
    tmp_path, small_clip, long_clip, tiny_encoder
):
    """A file played live ends (as a camera stream may): its alerts clear then, the last
    ones too (an analysis of its last frames could fire after the end), not at the run's
    end, which may be days later."""
    rule = AlertRule("anything", ("short",), threshold=-1.0, frames=1, cooldown_s=0.2)
    config = RunConfig(input=(f"short={small_clip}", f"cam={long_clip}"), live=True,
                       outputs=_outputs(tmp_path), alerts=(rule,))  # fmt: skip
    jsonl, observer, stop = tmp_path / "short.jsonl", _Cleared(), asyncio.Event()
    task = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[observer])
    )
    try:
        await wait_until(lambda: observer.cleared or task.done(), 30, "cleared at its end")
        await asyncio.sleep(2.0)  # a second or two of the other stream: the run goes on
        assert not task.done()
        alerts = [r["type"] for r in read_jsonl(jsonl) if r["type"].startswith("alert")]
        assert alerts and alerts[-1] == "alert_cleared", alerts[-3:]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert observer.cleared[-1].reason == "ended"


async def test_a_failing_stream_does_not_stop_the_others_and_credentials_stay_hidden(
    tmp_path, rtsp_server, tiny_encoder, caplog
):
    good = rtsp_server.url("cam1")
    bad = rtsp_server.url("nope", userinfo="admin:s3cr3t-pw")
    config = RunConfig(input=(good, bad), outputs=_outputs(tmp_path), sources=FAST_RECONNECT)
    good_jsonl = tmp_path / f"127.0.0.1_{rtsp_server.port}_cam1.jsonl"
    with caplog.at_level(logging.DEBUG):
        summary = await _run_until(
            config, tiny_encoder, lambda: _lines(good_jsonl) >= 6, 30, "the good stream ran"
        )
    by_state = {s.state: s for s in summary.streams}
    assert by_state["failed"].error and "no stream there" in by_state["failed"].error
    assert by_state["online"].frames > 10
    everything = (
        caplog.text
        + str(summary)
        + "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.jsonl"))
    )
    assert "s3cr3t-pw" not in everything
    assert not any("s3cr3t" in p.name for p in tmp_path.iterdir())


async def test_a_camera_that_comes_back_at_another_resolution_keeps_one_video_size(
    tmp_path, own_rtsp_server, tiny_encoder, caplog
):
    """320x180 before the restart, 640x360 after: the file keeps its first size, every frame
    is written (scaled), the analyses go on, and the change is said once."""
    url = own_rtsp_server.url("cam")
    config = RunConfig(input=f"cam={url}", outputs=_outputs(tmp_path), sources=FAST_RECONNECT)
    jsonl = tmp_path / "cam.jsonl"
    caplog.set_level(logging.WARNING)
    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    try:
        await wait_until(lambda: "online" in _states(jsonl) if jsonl.exists() else False, 30,
                         "online")  # fmt: skip
        own_rtsp_server.kill()
        await wait_until(lambda: "offline" in _states(jsonl), 15, "offline after the kill")
        own_rtsp_server.mounts = {"cam": "pattern:640x360"}
        own_rtsp_server.start()
        await wait_until(lambda: _states(jsonl).count("online") >= 2, 20, "online again")
        before = sum(1 for r in read_jsonl(jsonl) if r["type"] == "analysis")
        await wait_until(
            lambda: sum(1 for r in read_jsonl(jsonl) if r["type"] == "analysis") > before + 2,
            20, "analyses of the larger frames",
        )  # fmt: skip
    finally:
        stop.set()
    summary = await asyncio.wait_for(task, 30)
    (stream,) = summary.streams
    assert caplog.text.count("frame size changed to 640x360") == 1
    video = video_stream(ffprobe(tmp_path / "cam.mp4"))
    assert (int(video["width"]), int(video["height"])) == (320, 180)
    assert int(video["nb_read_frames"]) == stream.frames


async def test_a_camera_that_comes_back_with_another_codec_or_profile_keeps_going(
    tmp_path, own_rtsp_server, tiny_encoder, caplog
):
    """H.264 before the first restart, H.265 after it, then H.264 High 4:4:4 (the same codec
    with another profile and chroma format): each connection's decoder is the stream's own,
    the stream is analysed and written throughout, and the codec change is said."""
    url = own_rtsp_server.url("cam")
    config = RunConfig(input=f"cam={url}", outputs=_outputs(tmp_path), sources=FAST_RECONNECT)
    jsonl = tmp_path / "cam.jsonl"
    caplog.set_level(logging.WARNING)

    def analysed() -> int:
        return sum(1 for r in read_jsonl(jsonl) if r["type"] == "analysis")

    stop = asyncio.Event()
    task = asyncio.create_task(run_pipeline(config, encoder=tiny_encoder, stop=stop))
    try:
        await wait_until(lambda: "online" in _states(jsonl) if jsonl.exists() else False, 30,
                         "online")  # fmt: skip
        for onlines, encoding in enumerate(("h265", "h264-444"), start=2):
            own_rtsp_server.kill()
            await wait_until(lambda: _states(jsonl)[-1] == "offline", 15, "offline")
            own_rtsp_server.mounts = {"cam": f"pattern:320x180:{encoding}"}
            own_rtsp_server.start()
            await wait_until(lambda n=onlines: _states(jsonl).count("online") >= n, 20,
                             f"online again with {encoding}")  # fmt: skip
            before = analysed()
            await wait_until(lambda b=before: analysed() > b + 2, 20,
                             f"analyses of the {encoding} frames")  # fmt: skip
    finally:
        stop.set()
    summary = await asyncio.wait_for(task, 30)
    (stream,) = summary.streams
    assert stream.state != "failed" and stream.reconnects >= 2
    assert "the stream came back as hevc 320x180 (was h264 320x180)" in caplog.text
    assert "the stream came back as h264 320x180 (was hevc 320x180)" in caplog.text
    video = video_stream(ffprobe(tmp_path / "cam.mp4"))
    assert (video["codec_name"], int(video["width"]), int(video["height"])) == ("h264", 320, 180)
    assert int(video["nb_read_frames"]) == stream.frames


@pytest.mark.slow
async def test_packet_loss_over_udp_damages_pictures_not_the_run(tmp_path, gst_rtsp, tiny_encoder):
    """RTSP over UDP from a server that loses 5 % of the encoded frames: the decoder meets
    missing pictures and broken references; the stream stays online and keeps being analysed
    and written."""
    server = RtspServer(gst_rtsp, {"cam": "lossy:0.05"})
    server.start()
    try:
        options = SourceOptions(rtsp_transport="udp", open_timeout=3.0, read_timeout=3.0,
                                reconnect=RECONNECT)  # fmt: skip
        config = RunConfig(input=f"cam={server.url('cam')}", outputs=_outputs(tmp_path),
                           sources=options)  # fmt: skip
        jsonl = tmp_path / "cam.jsonl"
        summary = await _run_until(
            config, tiny_encoder,
            lambda: sum(1 for r in read_jsonl(jsonl) if r["type"] == "analysis") >= 12
            if jsonl.exists() else False, 60, "12 analyses through the losses",
        )  # fmt: skip
    finally:
        server.kill()
    (stream,) = summary.streams
    assert stream.state != "failed" and stream.frames > 50
    assert int(video_stream(ffprobe(tmp_path / "cam.mp4"))["nb_read_frames"]) == stream.frames


@pytest.mark.slow
async def test_udp_datagrams_lost_between_camera_and_streamer_damage_pictures_not_the_run(
    tmp_path, gst_rtsp, tiny_encoder
):
    """RTSP over UDP through a proxy that loses 5 % of the RTP (and RTCP) datagrams, as a
    network does: a 640x360 picture spans several datagrams, so the decoder meets pictures
    with slices or fragments missing and gaps in the sequence numbers. The stream stays online
    and keeps being analysed and written; the proxy really relayed a UDP session and lost
    some of it; the damage is counted, and the viewer's /metrics and /api/status serve the
    count while the run goes on."""
    server = RtspServer(gst_rtsp, {"cam": "pattern:640x360"})
    server.start()
    proxy = UdpLossProxy("127.0.0.1", server.port, loss=0.05, rtcp_loss=0.05, seed=7)
    jsonl = tmp_path / "cam.jsonl"
    watch, viewer = _Watch(), WebViewer(ServeConfig(port=0))

    def analysed_through_losses() -> bool:
        analyses = sum(1 for r in read_jsonl(jsonl) if r["type"] == "analysis")
        return analyses >= 12 and proxy.counters.rtp_dropped >= 10 and watch.damaged() >= 1

    try:
        with ProxyThread(proxy):
            options = SourceOptions(rtsp_transport="udp", open_timeout=3.0, read_timeout=5.0,
                                    reconnect=RECONNECT)  # fmt: skip
            config = RunConfig(input=f"cam={proxy.url('cam')}", outputs=_outputs(tmp_path),
                               sources=options)  # fmt: skip
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[watch, viewer])
            )
            try:
                await wait_until(
                    lambda: (jsonl.exists() and analysed_through_losses()) or task.done(),
                    60, "12 analyses, 10 datagrams lost and a damaged picture counted",
                )  # fmt: skip
                assert not task.done(), "the run ended by itself"
                metric, served = await _damaged_served(viewer, "cam")
            finally:
                stop.set()
            summary = await asyncio.wait_for(task, 30)
    finally:
        server.kill()
    counters = proxy.counters
    assert not proxy.errors
    assert counters.udp_setups >= 1 and counters.other_setups == 0 and counters.interleaved == 0
    assert counters.rtp_dropped >= 10
    assert 0.02 < counters.rtp_dropped / (counters.rtp_dropped + counters.rtp_relayed) < 0.1
    (stream,) = summary.streams
    assert stream.state != "failed" and stream.frames > 50 and stream.analysed >= 12
    assert "online" in _states(jsonl)
    assert int(video_stream(ffprobe(tmp_path / "cam.mp4"))["nb_read_frames"]) == stream.frames
    # Counted, never more than once a picture or packet, and only growing: what was served
    # mid-run is at most what the summary says at the end.
    assert 1 <= metric <= stream.damaged and 1 <= served <= stream.damaged
    assert stream.damaged < stream.frames  # the damaged ones, not every picture
    assert stream.damaged_packets == 0  # a file's field: a live source leaves it alone
    assert all("damaged" in r for r in read_jsonl(jsonl) if r["type"] == "status")


async def test_a_live_run_started_again_keeps_what_the_last_one_recorded(
    tmp_path, small_clip, tiny_encoder
):
    """A service restarted (or a camera added again under its name) writes the same paths: the
    earlier recording is kept beside the new one (it was written over: 28 MB of a camera)."""
    outputs = OutputConfig(video=str(tmp_path / "{stream}.mp4"),
                           jsonl=str(tmp_path / "{stream}.jsonl"), preset="ultrafast")  # fmt: skip
    config = RunConfig(input=f"door={small_clip}", live=True, outputs=outputs)
    first = await run_pipeline(config, encoder=tiny_encoder)
    second = await run_pipeline(config, encoder=tiny_encoder)
    kept = tmp_path / "door.keep-1.mp4"
    assert int(video_stream(ffprobe(kept))["nb_read_frames"]) == first.streams[0].frames
    assert int(video_stream(ffprobe(tmp_path / "door.mp4"))["nb_read_frames"]) == (
        second.streams[0].frames
    )
    assert (tmp_path / "door.keep-1.jsonl").exists() and not (tmp_path / "door.keep-2.mp4").exists()
