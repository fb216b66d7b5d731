"""WebRTC in the viewer, in a real headless Chromium during a live run (a 720p file played
live, the tiny random encoder): the page plays the stream over WebRTC (frames decoded), two
pages share one encoder, a page that leaves frees its peer, MJPEG takes over when asked, when
WebRTC is refused and when the connection is lost; the page measures the latency; and the
offer route keeps the viewer's token rule and refuses a bad body."""

import asyncio

import aiohttp
import pytest
from live_helpers import wait_until

from bench.harness.browser import Chromium, chromium_path
from streamer import OutputConfig, RunConfig, run_pipeline
from streamer.config import ServeConfig
from streamer.watch.web import WebViewer
from streamer.watch.web.webrtc import RtcLimits, available

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "webrtc-test-token"
CARD = "document.querySelector('[data-stream=\"cam\"]')"


async def _frames_decoded(page) -> int:
    """framesDecoded of the page's inbound WebRTC video (getStats), 0 when none."""
    return await page.evaluate("""(async () => {
      const pc = window.streamerRtc.connections.cam;
      if (!pc) return 0;
      const stats = await pc.getStats();
      let n = 0;
      stats.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video")
        n = s.framesDecoded || 0; });
      return n;
    })()""")


async def _status(session, url) -> dict:
    async with session.get(f"{url}api/status", headers=_auth()) as response:
        return (await response.json())["webrtc"]


def _auth() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_two_pages_watch_one_encoder_and_a_page_that_leaves_is_freed(
    tmp_path, long_clip, tiny_encoder
):
    if chromium_path() is None:  # CI installs it (scripts/setup.sh --test): a failure, no skip
        pytest.fail("chromium is missing: run `bash scripts/setup.sh --test` (apt: chromium)")
    assert available(), "aiortc is missing: pip install -e '.[webrtc]' (setup.sh --test does)"
    limits = RtcLimits(max_peers=2, stamp_clock=True)  # a third page is refused: MJPEG
    viewer = WebViewer(ServeConfig(port=0, token=TOKEN), webrtc=limits)
    jsonl = OutputConfig(jsonl=str(tmp_path / "cam.jsonl"))  # a run must write something
    config = RunConfig(input=f"cam={long_clip}", live=True, outputs=jsonl)
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[viewer])
    )
    try:
        async with Chromium.launch() as browser, aiohttp.ClientSession() as http:
            await wait_until(lambda: viewer.url is not None or run.done(), 60, "viewer up")
            url = viewer.url
            pages = [await browser.new_page(new_window=True) for _ in range(3)]
            for page in pages[:2]:
                await _open(page, url)
                await wait_until_async(lambda p=page: _frames_decoded(p), 20, 30, "20 frames")
            await _both_share_one_encoder(pages, http, url)
            await _open(pages[2], url)
            note = f"{CARD}.querySelector('.view-note').textContent"
            await pages[2].wait_for(f"{note}.includes('showing MJPEG')", 20, "the fallback")
            await pages[2].wait_for(f"{CARD}.querySelector('img.video').naturalWidth > 0", 20,
                                    "MJPEG shows a frame")  # fmt: skip
            assert "WebRTC viewers already" in await pages[2].evaluate(note)
            await _the_latency_is_measured(pages[0])
            await _pages_that_leave_are_freed(pages, http, url)
            await _a_lost_connection_falls_back(viewer, pages[1], http, url)
            await _refusals(http, url)
    finally:
        stop.set()
        summary = await asyncio.wait_for(run, 60)
    assert summary.frames > 0


async def _open(page, url: str) -> None:
    await page.goto(f"{url}?token={TOKEN}")
    await page.wait_for(f"{CARD}?.querySelector('select.view').value === 'webrtc'",
                        30, "WebRTC is the default view")  # fmt: skip


async def _both_share_one_encoder(pages, http, url: str) -> None:
    first = await _frames_decoded(pages[0])
    await asyncio.sleep(1.5)
    assert await _frames_decoded(pages[0]) > first  # still playing
    codec = await pages[0].evaluate(f"{CARD}.querySelector('video.rtc').dataset.codec")
    rtc = await _status(http, url)
    assert (rtc["peers"], rtc["encoders"]) == (2, 1)
    assert rtc["streams"]["cam"]["codec"] == codec and rtc["streams"]["cam"]["peers"] == 2
    async with http.get(f"{url}metrics", headers=_auth()) as response:
        metrics = await response.text()
    assert "streamer_webrtc_peers 2.0" in metrics
    assert "streamer_webrtc_encoders 1.0" in metrics


async def _the_latency_is_measured(page) -> None:
    """The page reads the clock stamp back from the WebRTC video: a latency per frame."""
    samples = "window.streamerLatency.cam.webrtc"
    await page.wait_for(f"{samples}.length >= 20", 20, "20 frames' latency")
    values = await page.evaluate(samples)
    assert all(0 <= ms < 5000 for ms in values), values  # drawn moments ago, not garbage
    shown = await page.evaluate(f"{CARD}.querySelector('.glass').textContent")
    assert "glass-to-glass (webrtc) p50" in shown and "p95" in shown


async def _pages_that_leave_are_freed(pages, http, url: str) -> None:
    await pages[0].goto("about:blank")  # the page leaves: its peer is freed
    await wait_until_async(lambda: _peers(http, url), 1, 15, "one peer left", exact=True)
    assert (await _status(http, url))["encoders"] == 1
    await _choose(pages[1], "mjpeg")  # the viewer's choice: the peer goes, MJPEG plays
    await pages[1].wait_for(f"{CARD}.querySelector('img.video').naturalWidth > 0", 20,
                            "MJPEG shows a frame")  # fmt: skip
    await wait_until_async(lambda: _peers(http, url), 0, 15, "no peer", exact=True)
    assert (await _status(http, url))["encoders"] == 0  # nothing encoded for nobody
    assert not pages[1].errors and not pages[2].errors


async def _a_lost_connection_falls_back(viewer, page, http, url: str) -> None:
    """The server ends a page's connection (its encoder failed: an injected fault); the
    browser sees it only as "disconnected", and then shows MJPEG."""
    await _choose(page, "webrtc")
    await wait_until_async(lambda: _frames_decoded(page), 5, 30, "WebRTC again")
    rtc = viewer._rtc
    rtc._encoder_failed(next(iter(rtc._encoders.values())))
    await wait_until_async(lambda: _peers(http, url), 0, 15, "the peer closed", exact=True)
    note = f"{CARD}.querySelector('.view-note').textContent"
    await page.wait_for(f"{note}.includes('lost; showing MJPEG')", 30, "the fallback")
    assert await page.evaluate(f"{CARD}.querySelector('select.view').value") == "mjpeg"


async def _choose(page, view: str) -> None:
    await page.evaluate(f"""(() => {{ const s = {CARD}.querySelector('select.view');
        s.value = '{view}'; s.dispatchEvent(new Event('change')); }})()""")


async def _peers(http, url) -> int:
    return (await _status(http, url))["peers"]


async def _refusals(http, url) -> None:
    offer = {"type": "offer", "sdp": "v=0\r\n"}
    async with http.post(f"{url}api/webrtc/cam", json=offer) as response:
        assert response.status == 401  # the viewer's token rule holds for WebRTC too
    async with http.post(f"{url}api/webrtc/cam", data=b"{", headers=_auth()) as response:
        assert response.status == 400 and "offer" in (await response.json())["error"]
    async with http.post(f"{url}api/webrtc/nope", json=offer, headers=_auth()) as response:
        assert response.status == 404
    async with http.post(f"{url}api/webrtc/cam", json=offer, headers=_auth()) as response:
        assert response.status == 400  # not an SDP aiortc can answer
    assert (await _status(http, url))["peers"] == 0  # nothing left behind by a refusal


async def wait_until_async(read, target: int, timeout: float, what: str, exact: bool = False):
    """Poll the coroutine function `read` until it returns `target` (exact) or more."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await read()
        if value == target or (not exact and value >= target):
            return value
        if asyncio.get_running_loop().time() > deadline:
            seen = await _diagnosis(read)
            raise AssertionError(f"not within {timeout} s: {what} (last: {value}){seen}")
        await asyncio.sleep(0.2)


async def _diagnosis(read) -> str:
    """What the page knows of its connection, for a failure's message (a page-reading `read`
    carries its page as the default of its lambda)."""
    page = (read.__defaults__ or (None,))[0]
    if page is None:
        return ""
    try:
        state = await page.evaluate("""(() => {
          const pc = window.streamerRtc.connections.cam;
          const note = document.querySelector('[data-stream="cam"] .view-note');
          return JSON.stringify({connection: pc && pc.connectionState,
            ice: pc && pc.iceConnectionState, gathering: pc && pc.iceGatheringState,
            note: note && note.textContent, mode: document.querySelector(
              '[data-stream="cam"] select.view')?.value});
        })()""")
    except Exception as exc:  # the page is gone: say so rather than hide the first failure
        return f"; the page could not be read: {exc}"
    return f"; the page: {state}; its console: {page.errors}"


async def test_a_peer_that_never_connects_is_closed_with_its_encoder(
    tmp_path, long_clip, tiny_encoder, monkeypatch
):
    # A tab closed during the handshake, or a page that never applied the answer: no
    # connection state ever changes, and the peer kept its place and an encoder at work.
    from aiortc import RTCPeerConnection

    from streamer.watch.web import webrtc

    assert available(), "aiortc is missing: pip install -e '.[webrtc]' (setup.sh --test does)"
    monkeypatch.setattr(webrtc, "CONNECT_TIMEOUT_S", 1.0)
    viewer = WebViewer(ServeConfig(port=0, token=TOKEN), webrtc=RtcLimits())
    config = RunConfig(input=f"cam={long_clip}", live=True,
                       outputs=OutputConfig(jsonl=str(tmp_path / "cam.jsonl")))  # fmt: skip
    stop = asyncio.Event()
    run = asyncio.create_task(
        run_pipeline(config, encoder=tiny_encoder, stop=stop, observers=[viewer])
    )
    client = RTCPeerConnection()
    try:
        await wait_until(lambda: viewer.url is not None or run.done(), 60, "viewer up")
        client.addTransceiver("video", direction="recvonly")
        await client.setLocalDescription(await client.createOffer())
        offer = {"type": "offer", "sdp": client.localDescription.sdp}
        async with aiohttp.ClientSession() as http:
            url = f"{viewer.url}api/webrtc/cam"
            async with http.post(url, json=offer, headers=_auth()) as response:
                answer = await response.json()
                assert response.status == 200 and answer["type"] == "answer"
            # random, not a count: another token holder cannot hang up the next browser
            assert len(answer["peer"]) >= 20 and not answer["peer"].isdigit(), answer["peer"]
            assert (await _status(http, viewer.url))["peers"] == 1
            await client.close()  # the answer never applied: the server's peer never connects
            await wait_until_async(lambda: _peers(http, viewer.url), 0, 10, "closed", exact=True)
            assert (await _status(http, viewer.url))["encoders"] == 0
            # The page's hang-up after the server closed it is done, not an error (console
            # noise); a peer that never was is still unknown.
            peers = f"{viewer.url}api/webrtc/peers/"
            async with http.delete(peers + str(answer["peer"]), headers=_auth()) as response:
                assert response.status == 200
            async with http.delete(peers + "999", headers=_auth()) as response:
                assert response.status == 404
    finally:
        await client.close()
        stop.set()
        summary = await asyncio.wait_for(run, 60)
    assert summary.frames > 0
