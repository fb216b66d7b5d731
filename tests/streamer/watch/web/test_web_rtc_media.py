"""The WebRTC media of the viewer without a browser: one encoding feeds every peer (the same
`av.Packet` objects), each peer starts on a keyframe, a peer that falls behind skips to the
next keyframe, and the clock stamp reads back after JPEG. Without aiortc the viewer refuses
offers (501) and says so in its status."""

import asyncio

import aiohttp
import numpy as np
import pytest
from web_helpers import run_and_check

from streamer import OutputConfig, RunConfig
from streamer.config import ServeConfig
from streamer.watch.web import WebViewer
from streamer.watch.web._rtc_media import (
    RtcLimits,
    SharedEncoder,
    packet_track_class,
    read_stamp,
    stamp_clock,
)
from streamer.watch.web.webrtc import available

NEEDS_AIORTC = pytest.mark.skipif(not available(), reason="needs aiortc (the webrtc extra)")


def _picture(i: int) -> np.ndarray:
    image = np.zeros((240, 320, 3), np.uint8)
    image[:, : (i * 7) % 320] = (200, 60, 20)  # moves: every frame differs
    return image


async def _encode(encoder: SharedEncoder, count: int) -> None:
    """Store `count` frames one by one, each encoded and delivered before the next."""
    for _ in range(count):
        done = encoder.frames + 1
        encoder.store(_picture(done))
        async with asyncio.timeout(10):
            while encoder.frames < done:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)  # the packets reach the loop (call_soon_threadsafe)


async def _drain(track) -> list:
    packets = []
    while not track._queue.empty():
        packets.append(await track.recv())
    return packets


@NEEDS_AIORTC
@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_one_encoding_feeds_every_peer_each_from_a_keyframe(codec):
    limits = RtcLimits(max_fps=200, keyframe_s=100.0, queue=50)  # no timed keyframe here
    encoder = SharedEncoder("cam", codec, limits, asyncio.get_running_loop())
    track = packet_track_class()
    first, late = track(limits.queue, encoder.want_key), track(limits.queue, encoder.want_key)
    try:
        encoder.subscribe(first)
        await _encode(encoder, 6)
        encoder.subscribe(late)  # joins mid-stream: the next frame is a keyframe for it
        await _encode(encoder, 6)
        a, b = await _drain(first), await _drain(late)
    finally:
        await encoder.close()
    assert encoder.frames == 12  # encoded once for both peers
    assert len(a) == 12 and len(b) == 6
    assert a[0].is_keyframe and b[0].is_keyframe
    assert [p.is_keyframe for p in a].count(True) == 2  # the start, and the late peer's
    assert all(x is y for x, y in zip(a[6:], b, strict=True))  # the very same packets
    assert encoder.bytes == sum(p.size for p in a)


@NEEDS_AIORTC
async def test_a_peer_that_falls_behind_waits_for_a_keyframe_it_asked_for():
    limits = RtcLimits(max_fps=200, keyframe_s=100.0, queue=3)
    encoder = SharedEncoder("cam", "H264", limits, asyncio.get_running_loop())
    slow = packet_track_class()(limits.queue, encoder.want_key)
    try:
        encoder.subscribe(slow)
        await _encode(encoder, 4)  # 3 queued, the 4th overflows: dropped, a keyframe asked
        assert slow.skipped == 1 and slow._queue.empty()
        await _encode(encoder, 2)
        packets = await _drain(slow)
    finally:
        await encoder.close()
    assert [p.is_keyframe for p in packets] == [True, False]  # it starts again cleanly


def test_the_clock_stamp_reads_back_after_jpeg():
    import cv2

    image = np.full((720, 1280, 3), 90, np.uint8)
    stamp_clock(image, now_ms=1_733_280_000_123)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    back = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert read_stamp(back) == 1_733_280_000_123 % (1 << 32)
    assert read_stamp(np.full((720, 1280, 3), 90, np.uint8)) is None  # no stamp: no value


async def test_without_aiortc_the_offer_is_refused_and_the_page_stays_on_mjpeg(
    tmp_path, small_clip, tiny_encoder
):
    viewer = WebViewer(ServeConfig(port=0))
    viewer._rtc.available = False  # as without the extra (aiortc is installed for the tests)

    async def check(viewer):
        async with aiohttp.ClientSession() as http:
            offer = {"type": "offer", "sdp": "v=0\r\n"}
            async with http.post(f"{viewer.url}api/webrtc/clip", json=offer) as response:
                refused = response.status, (await response.json())["error"]
            async with http.get(f"{viewer.url}api/status") as response:
                status = (await response.json())["webrtc"]
            async with http.get(f"{viewer.url}static/rtc.js") as response:
                script = response.status, response.content_type
        return refused, status, script

    config = RunConfig(input=f"clip={small_clip}", outputs=OutputConfig(jsonl=str(tmp_path / "c")))
    _, (refused, status, script) = await run_and_check(config, tiny_encoder, viewer, check)
    assert refused[0] == 501 and 'pip install "aiortc>=' in refused[1]
    assert status == {"available": False, "stamp_clock": False, "peers": 0, "encoders": 0,
                      "streams": {}}  # fmt: skip
    assert script == (200, "text/javascript")  # the page's part that then picks MJPEG


@pytest.mark.parametrize("codec", ["H264", "VP8"])
def test_each_picture_reaches_the_peer_in_its_colours_and_scaled_to_the_limit(codec):
    import av

    from streamer.watch.web._rtc_media import _Coder

    coder = _Coder(codec, RtcLimits(long_edge=160, bitrate=4_000_000))
    base = np.zeros((240, 400, 3), np.uint8)
    colours = [(200, 60, 20), (20, 180, 90), (40, 40, 220)]
    packets = []
    for i, colour in enumerate(colours):
        base[:] = colour  # the same buffer, repainted: each frame must read it afresh
        view = base[:, 40:360]  # 240x320 of it, not contiguous
        packets += coder.encode(view, key=i == 0)
    packets += coder._context.encode(None)  # what the encoder still holds
    decoder = av.CodecContext.create("h264" if codec == "H264" else "vp8", "r")
    decoded = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    assert len(decoded) == len(colours)
    for frame, colour in zip(decoded, colours, strict=True):
        assert (frame.width, frame.height) == (160, 120)  # 320x240 with its long edge at 160
        mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(mean, colour, atol=12)
