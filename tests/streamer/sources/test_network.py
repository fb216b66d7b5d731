"""Network sources against a real RTSP server (GStreamer's, on loopback) and real failures:
a killed server, a frozen one, one that accepts and never answers, a refused port, a wrong
mount, credentials in the URL."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import shutil
import subprocess
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import av
import av.logging
import numpy as np
import pytest
from live_helpers import (
    FAST,
    GrowingPlaylist,
    RtspServer,
    Running,
    StaticServer,
    free_port,
    wait_until,
)
from servers.udp_loss_proxy import ProxyThread, UdpLossProxy

from streamer.core.channel import DropPolicy
from streamer.core.retry import RetryPolicy
from streamer.errors import SourceNotFoundError
from streamer.sources import NetworkSource, SourceOptions, open_source
from streamer.sources.remote_file import FILE_ATTEMPTS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "streamer.sources" and r.levelno == logging.WARNING
    ]


def _infos(caplog, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "streamer.sources" and r.levelno == logging.INFO and words in r.getMessage()
    ]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_reads_a_live_rtsp_stream_as_rgb_frames(rtsp_server, transport):
    options = dataclasses.replace(FAST, rtsp_transport=transport)
    source = open_source(rtsp_server.url("cam1"), options=options)
    assert isinstance(source, NetworkSource) and source.live
    # Room for a connection's first burst (the frames FFmpeg decoded while probing arrive in one
    # turn of the loop): with 8 slots a busy machine could drop a few, which is the live
    # contract, not what this test is about.
    async with Running(source, capacity=32) as run:
        await run.until(lambda: len(run.frames) >= 25, 15, "25 frames")
    frames = run.frames
    assert source.name == f"127.0.0.1_{rtsp_server.port}_cam1"
    assert all(f.image.shape == (180, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.index for f in frames] == list(range(len(frames)))  # a quick reader drops none
    assert all(b.pts > a.pts and b.captured >= a.captured for a, b in itertools.pairwise(frames))
    assert 0 <= time.monotonic() - frames[-1].captured < 5
    # The test pattern's second bar is yellow: red and green high, blue low, in RGB order.
    r, g, b = frames[-1].image[90, 320 * 3 // 14].astype(int)
    assert r > 150 and g > 150 and b < 80, (r, g, b)
    assert source.status.state == "online" and source.status.frames >= 25
    assert (source.info.width, source.info.height, source.info.codec) == (320, 180, "h264")


async def test_two_streams_from_one_server_at_once(rtsp_server):
    sources = [open_source(rtsp_server.url(m), options=FAST) for m in ("cam1", "cam2")]
    async with Running(sources[0]) as one, Running(sources[1]) as two:
        await wait_until(
            lambda: len(one.frames) >= 25 and len(two.frames) >= 25, 20, "25 frames each"
        )
    assert {f.stream for f in one.frames} == {sources[0].name}
    assert {f.stream for f in two.frames} == {sources[1].name}
    assert sources[0].name != sources[1].name


async def test_a_clip_served_once_ends_the_source(rtsp_server):
    source = open_source(rtsp_server.url("clip"), options=FAST)
    async with Running(source) as run:
        await run.ended(20)
    assert source.status.state == "ended"
    assert 40 <= len(run.frames) <= 50  # the 2 s small clip at 25 fps
    assert run.frames[0].image.shape == (180, 320, 3)


async def test_reconnects_by_itself_when_the_server_is_killed_and_restarted(
    own_rtsp_server, caplog
):
    caplog.set_level(logging.DEBUG, logger="streamer.sources")
    source = open_source(own_rtsp_server.url("cam"), options=FAST)
    async with Running(source) as run:
        await run.until(lambda: len(run.frames) >= 10, 15, "10 frames")
        own_rtsp_server.kill()
        await run.until(lambda: source.status.state == "offline", 5, "offline")
        assert source.status.offline_since == pytest.approx(time.time(), abs=5)
        await run.until(lambda: source.status.reconnects >= 2, 10, "retries while down")
        before = len(run.frames)
        own_rtsp_server.start()
        back = await run.until(lambda: len(run.frames) > before, 15, "frames after restart")
        await run.until(lambda: len(run.frames) >= before + 10, 10, "10 more frames")
    print(f"\nframes resumed {back:.2f} s after the RTSP server restarted")
    status = source.status
    assert status.state == "online" and status.offline_since is None
    assert "closed the stream" in status.last_error or "refused" in status.last_error
    frames = run.frames
    assert all(b.index > a.index and b.pts > a.pts for a, b in itertools.pairwise(frames))
    # The media time continues across the outage and shows it as a gap.
    assert frames[before].pts - frames[before - 1].pts > 0.5
    # A line per attempt, each with its reason: a warning when the reason is new, a debug
    # line when it repeats; and one line when it came back.
    attempts = [r for r in caplog.records if "; reconnect attempt" in r.getMessage()]
    assert len(attempts) == status.reconnects >= 2
    assert "the server closed the stream" in attempts[0].getMessage()
    reasons = [r.getMessage().split(": ", 2)[2].split(";")[0] for r in attempts]
    new = [i == 0 or reasons[i] != reasons[i - 1] for i in range(len(reasons))]
    assert [r.levelno for r in attempts] == [logging.WARNING if n else logging.DEBUG for n in new]
    assert len(_infos(caplog, "back online after")) == 1


@pytest.mark.slow
async def test_damage_from_lost_datagrams_is_counted_and_adds_up_across_reconnects(gst_rtsp):
    """RTSP over UDP through a proxy that loses 5 % of the RTP datagrams: pictures arrive with
    slices missing and the source counts them in `status.damaged`. When the server dies and
    comes back, the new connection's damage adds to the count: it never goes down."""
    server = RtspServer(gst_rtsp, {"cam": "pattern:640x360"})
    server.start()
    proxy = UdpLossProxy("127.0.0.1", server.port, loss=0.05, seed=3)
    seen: list[int] = []  # `status.damaged` at every poll

    def damaged() -> int:
        seen.append(source.status.damaged)
        return seen[-1]

    try:
        with ProxyThread(proxy):
            options = dataclasses.replace(FAST, rtsp_transport="udp")
            source = open_source(proxy.url("cam"), options=options)
            async with Running(source) as run:
                await run.until(lambda: damaged() >= 2, 30, "2 damaged pictures")
                server.kill()
                await run.until(lambda: damaged() and source.status.state == "offline", 10,
                                "offline after the kill")  # fmt: skip
                before = damaged()
                server.start()
                await run.until(
                    lambda: damaged() > before and source.status.state == "online", 30,
                    "damage counted on the new connection",
                )  # fmt: skip
    finally:
        server.kill()
    assert source.status.reconnects >= 1 and proxy.counters.rtp_dropped >= 10
    assert seen == sorted(seen), "the damaged count went down at a reconnect"
    assert source.status.damaged < source.status.frames  # the damaged pictures, not all


async def test_a_stalled_server_times_out_then_comes_back(own_rtsp_server, caplog):
    options = dataclasses.replace(FAST, open_timeout=2.0, read_timeout=2.0)
    source = open_source(own_rtsp_server.url("cam"), options=options)
    async with Running(source) as run:
        await run.until(lambda: len(run.frames) >= 5, 15, "5 frames")
        own_rtsp_server.pause()  # the connection stays up, nothing arrives
        # Offline after --read-timeout, not twice it: at PyAV's timeout FFmpeg's RTSP demuxer
        # hands over one more packet, and only its next timeout raised.
        took = await run.until(lambda: source.status.state == "offline", 8, "stall noticed")
        assert took < 3.5, f"the stall was noticed after {took:.1f} s, not 2"
        assert "no data for 2 s (stalled)" in source.status.last_error
        await run.until(lambda: source.status.reconnects >= 1, 6, "a reopen attempt")
        before = len(run.frames)
        own_rtsp_server.resume()
        await run.until(lambda: len(run.frames) > before + 5, 15, "frames after the stall")
    assert source.status.state == "online"


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
async def test_a_server_that_never_answers_times_out_and_retries(silent_server, scheme):
    options = dataclasses.replace(FAST, open_timeout=1.0, read_timeout=1.0)
    source = open_source(f"{scheme}://127.0.0.1:{silent_server.port}/cam", options=options)
    async with Running(source) as run:
        took = await run.until(lambda: source.status.reconnects >= 2, 10, "two reopen attempts")
    assert took < 8
    assert source.status.state == "offline"
    assert "no answer within 1 s" in source.status.last_error
    assert len(silent_server.accepted) >= 2  # it really connected each time
    assert run.frames == []


async def test_a_refused_port_is_retried_with_backoff(caplog):
    caplog.set_level(logging.DEBUG, logger="streamer.sources")
    port = free_port()
    source = open_source(f"rtsp://127.0.0.1:{port}/cam", options=FAST)
    async with Running(source) as run:
        await run.until(lambda: source.status.reconnects >= 3, 10, "three retries")
    status = source.status
    assert status.state == "offline"
    assert status.offline_since == pytest.approx(time.time(), abs=10)
    assert "connection refused" in status.last_error
    attempts = [r.getMessage() for r in caplog.records if "reconnect attempt" in r.getMessage()]
    # Jitter is off in FAST: delays double from backoff_initial up to backoff_cap.
    assert "reconnect attempt 1 in 0.2 s" in attempts[0]
    assert "reconnect attempt 2 in 0.4 s" in attempts[1]
    assert "reconnect attempt 3 in 0.8 s" in attempts[2]
    # A warning when the failure begins; the same failure again is a debug line, not one
    # warning per attempt all day long from a camera that is gone.
    assert [w for w in _warnings(caplog) if "reconnect attempt" in w] == [attempts[0]]


async def test_a_host_name_that_does_not_resolve_is_named_so():
    # `.invalid` never resolves (RFC 2606); FFmpeg itself says only "Input/output error".
    source = open_source("rtsp://no-such-camera.invalid/cam", options=FAST)
    async with Running(source) as run:
        await run.until(lambda: source.status.reconnects >= 1, 10, "a retry")
    assert "the host name 'no-such-camera.invalid' does not resolve" in source.status.last_error
    assert "Input/output error" not in source.status.last_error


async def test_max_attempts_gives_up_and_marks_the_source_failed(caplog):
    quick = RetryPolicy(initial=0.05, cap=0.05, jitter=0.0, max_attempts=3)
    options = dataclasses.replace(FAST, reconnect=quick)
    source = open_source(f"rtsp://127.0.0.1:{free_port()}/cam", options=options)
    async with Running(source) as run:
        await run.ended(10)
    assert source.status.state == "failed" and source.status.reconnects == 2
    assert "connection refused" in source.status.last_error
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "gave up after 3 failed attempts" in errors[-1]


async def test_a_wrong_mount_fails_fast_naming_the_url_and_the_fix(rtsp_server, caplog):
    url = rtsp_server.url("nope")
    source = open_source(url, options=FAST)
    started = time.monotonic()
    async with Running(source) as run:
        await run.ended(10)  # waits longer than the bound below, so the bound can fail
    assert time.monotonic() - started < 5
    assert source.status.state == "failed" and source.status.reconnects == 0
    assert isinstance(source.error, SourceNotFoundError)
    assert url in source.status.last_error and "404" in source.status.last_error
    assert "Fix: check the path in the URL" in source.status.last_error
    assert "the camera's manual" in source.status.last_error
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and url in errors[0]
    assert _warnings(caplog) == []  # no retrying


async def test_a_remote_file_its_server_cannot_serve_fails_soon_naming_why(hls_server, small_clip):
    # Index at the end and a server without byte ranges (Python's): FFmpeg cannot reach it.
    # It was retried for as long as the run went on, "the connection broke" every time.
    shutil.copy(small_clip, Path(hls_server.folder) / "index_last.mp4")
    options = dataclasses.replace(FAST, reconnect=RetryPolicy(initial=0.05, cap=0.1))
    source = open_source(hls_server.url("index_last.mp4"), options=options)
    assert not source.live
    async with Running(source) as run:
        await run.ended(20)
    assert source.status.state == "failed" and source.status.reconnects == FILE_ATTEMPTS - 1
    assert "does not serve byte ranges" in source.status.last_error
    assert "-movflags +faststart" in source.status.last_error


async def test_a_missing_http_video_is_not_sent_to_a_camera_s_manual(hls_server):
    source = open_source(hls_server.url("nope.mp4"), options=FAST)
    async with Running(source) as run:
        await run.ended(10)
    assert source.status.state == "failed" and isinstance(source.error, SourceNotFoundError)
    assert "as a browser opens it" in source.status.last_error
    assert "RTSP" not in source.status.last_error


async def test_credentials_never_appear_anywhere(rtsp_server, caplog):
    caplog.set_level(logging.DEBUG)
    av.logging.set_level(av.logging.VERBOSE)  # FFmpeg's own lines into Python logging too
    try:
        wrong = open_source(rtsp_server.url("nope", userinfo="user:secret"), options=FAST)
        refused = open_source(f"rtsp://user:secret@127.0.0.1:{free_port()}/cam", options=FAST)
        async with Running(wrong) as one, Running(refused) as two:
            await one.ended(5)
            await two.until(lambda: refused.status.reconnects >= 1, 10, "a retry")
        # A line as FFmpeg would log it, through PyAV's log callback.
        av.logging.log(av.logging.ERROR, "rtsp", f"cannot open {wrong._url}")
    finally:
        av.logging.set_level(None)
    assert any(r.name.startswith("libav.") for r in caplog.records)
    assert "rtsp://***@127.0.0.1" in caplog.text
    for source in (wrong, refused):
        assert source.spec.startswith("rtsp://***@127.0.0.1:")
        seen = [source.name, source.spec, repr(source.status), caplog.text]
        if source.error is not None:
            seen += [str(source.error), "".join(traceback.format_exception(source.error))]
        for text in seen:
            assert "secret" not in text and "user:" not in text, text


async def test_stop_returns_promptly_while_connecting_backing_off_or_streaming(
    silent_server, rtsp_server
):
    slow_open = dataclasses.replace(FAST, open_timeout=30.0)
    long_backoff = dataclasses.replace(FAST, reconnect=RetryPolicy(30.0, 30.0, jitter=0.0))
    cases = [
        (f"rtsp://127.0.0.1:{silent_server.port}/cam", slow_open, "connecting"),
        (f"rtsp://127.0.0.1:{free_port()}/cam", long_backoff, "offline"),
        (rtsp_server.url("cam1"), FAST, "online"),
    ]
    for url, options, state in cases:
        source = open_source(url, options=options)
        async with Running(source) as run:
            await run.until(lambda s=source, w=state: s.status.state == w, 15, state)
            await asyncio.sleep(0.2)
            run.stop.set()
            started = time.monotonic()
            await run.ended(5)
            assert time.monotonic() - started < 2, state


async def test_http_mjpeg_camera_is_read_and_reconnected_when_it_drops(mjpeg_server, caplog):
    caplog.set_level(logging.INFO, "streamer.sources")
    source = open_source(mjpeg_server.url(), options=FAST)
    assert source.live
    async with Running(source) as run:
        await run.until(lambda: source.status.reconnects >= 1, 10, "a dropped connection")
        await run.until(lambda: len(run.frames) >= 40, 10, "frames after the reconnect")
    assert mjpeg_server.connections >= 2 and source.status.state == "online"
    assert run.frames[0].image.shape == (180, 320, 3)
    assert all(b.pts > a.pts for a, b in itertools.pairwise(run.frames))
    assert "the connection broke (Input/output error)" in _warnings(caplog)[0]
    # MJPEG over HTTP states no rate: FFmpeg's assumed 25 fps is not reported as the camera's
    online = [r.getMessage() for r in caplog.records if ": online (" in r.getMessage()]
    assert online and all("320×180 mjpeg, rate not stated)" in line for line in online), online
    assert source.info is not None and source.info.fps is None


@pytest.mark.parametrize("playlist", ["small/index.m3u8", "small/master.m3u8"])
async def test_a_finished_hls_playlist_is_read_like_a_file_every_frame(
    hls_server, playlist, caplog
):
    caplog.set_level(logging.INFO, "streamer.sources")
    source = open_source(hls_server.url(playlist), options=FAST)
    # It ends with #EXT-X-ENDLIST (video on demand): the file contract, as for a remote .mp4.
    assert not source.live
    assert _infos(caplog, "a finished HLS playlist (video on demand)")
    async with Running(source, capacity=2, policy=DropPolicy.BLOCK) as run:
        await run.ended(20)
    assert source.status.state == "ended"
    assert [f.index for f in run.frames] == list(range(50)) and run.channel.dropped == 0
    assert run.frames[0].image.shape == (180, 320, 3)


async def test_a_live_hls_playlist_keeps_the_live_contract(hls_server):
    # A window of the latest segments and no #EXT-X-ENDLIST: more is coming.
    source = open_source(hls_server.url("live/index.m3u8"), options=FAST)
    assert source.live
    async with Running(source) as run:
        await run.until(lambda: len(run.frames) >= 5, 15, "frames of the live playlist")
    assert run.frames[0].image.shape == (180, 320, 3)
    # `--no-drop` still reads a live playlist without dropping, and `--live` a finished one live.
    assert not open_source(hls_server.url("live/index.m3u8"), live=False, options=FAST).live
    assert open_source(hls_server.url("small/index.m3u8"), live=True, options=FAST).live


@pytest.mark.parametrize("path", ["small/index.m3u8", "small.mp4"])
async def test_an_input_with_an_end_read_live_plays_at_its_frame_rate(hls_server, path):
    # `--live` on a finished playlist or a remote file: the clip's 2 s take 2 s, as a live
    # file's do; at the server's speed the clock-sampled analysis saw a few frames of it.
    source = open_source(hls_server.url(path), live=True, options=FAST)
    async with Running(source, capacity=64) as run:
        await run.ended(20)
    assert source.status.state == "ended" and len(run.frames) == 50
    took = run.frames[-1].captured - run.frames[0].captured
    assert took == pytest.approx(run.frames[-1].pts - run.frames[0].pts, abs=0.25)


@pytest.fixture(scope="module")
def growing_playlist(tmp_path_factory) -> Iterator[GrowingPlaylist]:
    """A live playlist of 2-s segments (320×180, 25 fps) that grows by one every 2 s."""
    folder = tmp_path_factory.mktemp("growing")
    source = ["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=16"]
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"]
    hls = ["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod", str(folder / "index.m3u8")]
    subprocess.run(["ffmpeg", "-v", "error", *source, *encode, *hls], check=True)
    server = GrowingPlaylist(folder)
    yield server
    server.close()


async def test_a_live_hls_playlist_plays_at_its_rate_through_segments_longer_than_the_timeout(
    growing_playlist,
):
    # HLS hands over a segment at once and the next one a segment later. Read at the
    # server's speed, a segment longer than --read-timeout (here 2 s against 1 s; Apple
    # advises 6 s against the default 5) was a stall and a reconnect every segment, and each
    # burst gave the clock-sampled analysis one frame of it.
    options = dataclasses.replace(FAST, read_timeout=1.0)
    source = open_source(growing_playlist.url("live.m3u8"), options=options)
    assert source.live
    async with Running(source, capacity=256) as run:
        await asyncio.sleep(5.0)
    assert source.status.reconnects == 0, source.status
    captured = [frame.captured for frame in run.frames]
    assert len(captured) >= 75, len(captured)  # frames kept coming
    first_second = [t for t in captured if t - captured[0] < 1.0]
    assert len(first_second) <= 35, len(first_second)  # 25 a second, not a 4-s burst of 100


@pytest.fixture(scope="module")
def two_variants(tmp_path_factory) -> Iterator[StaticServer]:
    """`master.m3u8`: a finished playlist of two variants (320×180 and 160×90, 4 s each in
    1-s segments), as a site offering several bit rates serves it."""
    folder = tmp_path_factory.mktemp("variants")
    source = ["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25:duration=4"]
    for name, size in (("big", "320:180"), ("small", "160:90")):
        (folder / name).mkdir()
        hls = ["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"]
        out = [*hls, str(folder / name / "index.m3u8")]
        encode = ["-vf", f"scale={size}", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25"]
        subprocess.run(["ffmpeg", "-v", "error", *source, *encode, *out], check=True)
    (folder / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=320x180\nbig/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=160x90\nsmall/index.m3u8\n"
    )
    server = StaticServer(folder)
    yield server
    server.close()


async def test_of_a_playlist_s_variants_only_the_one_read_is_downloaded(two_variants):
    # FFmpeg fetches every variant's segments unless told the others are not read: an
    # adaptive stream of five bit rates cost five times the bandwidth of the one decoded.
    source = open_source(two_variants.url("master.m3u8"), options=FAST)
    async with Running(source, capacity=128) as run:
        await run.ended(20)
    assert len(run.frames) == 100 and run.frames[0].image.shape == (180, 320, 3)
    big = [p for p in two_variants.requests if p.startswith("/big/index") and p.endswith(".ts")]
    small = [p for p in two_variants.requests if p.startswith("/small/") and p.endswith(".ts")]
    assert len(big) >= 4 and len(small) <= 1, two_variants.requests  # one: FFmpeg's probe


async def test_a_playlist_that_cannot_be_read_is_opened_as_live(hls_server):
    # The check never fails the open: the source reports what is wrong when it connects.
    assert open_source(hls_server.url("missing.m3u8"), options=FAST).live
    assert open_source(f"http://127.0.0.1:{free_port()}/a.m3u8", options=FAST).live


async def test_http_remote_file_delivers_every_frame_through_a_blocking_channel(
    hls_server, small_clip
):
    source = open_source(hls_server.url("small.mp4"), options=FAST)
    assert not source.live
    async with Running(source, capacity=2, policy=DropPolicy.BLOCK) as run:
        await run.ended(20)
    assert source.status.state == "ended"
    assert [f.index for f in run.frames] == list(range(50)) and run.channel.dropped == 0
    expected = av.open(str(small_clip)).decode(video=0)
    first = next(expected).to_ndarray(format="rgb24")
    assert np.array_equal(run.frames[0].image, first)


async def test_a_remote_file_cut_off_midway_resumes_without_repeating_frames(
    flaky_file_server, small_clip
):
    with av.open(str(small_clip)) as container:
        expected = [f.pts for f in container.decode(video=0)]
    source = open_source(flaky_file_server.url(), options=FAST)
    assert not source.live
    async with Running(source, capacity=2, policy=DropPolicy.BLOCK) as run:
        await run.ended(20)
    assert flaky_file_server.requests == 2 and source.status.reconnects == 1
    assert "the connection broke" in source.status.last_error
    assert source.status.state == "ended"
    assert [f.index for f in run.frames] == list(range(50))
    assert [f.pts_raw for f in run.frames] == expected  # none twice, none missing


def test_rtsp_options_use_tcp_and_ffmpeg_8_microsecond_timeouts():
    options = SourceOptions(rtsp_transport="udp", open_timeout=3, read_timeout=2)
    opts = NetworkSource("rtsp://127.0.0.1/cam", options=options).container_options()
    assert opts == {"analyzeduration": "500000", "rtsp_transport": "udp", "timeout": "4000000"}
    assert (
        "rtsp_transport"
        not in NetworkSource("http://127.0.0.1/a.m3u8", live=True).container_options()
    )


async def test_a_dropped_connection_is_freed_at_once_not_at_the_next_garbage_collection(
    own_rtsp_server, monkeypatch
):
    """A connection that fails must be released by reference counting as soon as the source
    reconnects: a reference cycle through the failure's traceback kept each dead reader and
    its decoder (megabytes of frame buffers) until a full garbage collection, which a
    long-running process rarely does; RSS rose at every camera reconnect."""
    import gc
    import weakref

    readers: list[weakref.ref] = []
    original = NetworkSource._open_reader

    def tracked(self, resume_after):
        reader = original(self, resume_after)
        readers.append(weakref.ref(reader))
        return reader

    monkeypatch.setattr(NetworkSource, "_open_reader", tracked)
    source = open_source(own_rtsp_server.url("cam"), options=FAST)
    gc.collect()
    gc.disable()  # only reference counting may free the dead connection
    try:
        async with Running(source) as run:
            await run.until(lambda: len(run.frames) >= 10, 15, "10 frames")
            own_rtsp_server.kill()
            await run.until(lambda: source.status.state == "offline", 5, "offline")
            own_rtsp_server.start()
            await run.until(lambda: len(readers) >= 2 and source.status.state == "online", 15,
                            "a second connection")  # fmt: skip
            first = readers[0]
            assert first() is None, "the dropped connection's reader is still alive"
    finally:
        gc.enable()
