"""WebRTC in the viewer (aiortc, the `webrtc` extra): each stream's video to browsers with
the lowest latency, its frames encoded once per stream however many browsers watch.

Routes (on the viewer's server, behind its guard: its bind and token rules)::

    POST   /api/webrtc/{name}         {"type": "offer", "sdp": ...} -> {"type": "answer",
                                      "sdp": ..., "peer": ID, "codec": "H264" | "VP8"}
    DELETE /api/webrtc/peers/{peer}   the page closed its connection: free it at once (a peer
                                      closed already answers as done: 200)

A peer's id is random (128 bits), not a count: whoever holds the viewer's token can hang up a
peer only by the id its own offer was answered with, not by guessing the next browser's.

The browser offers; the server answers with H.264 when the browser offers it (packetization
mode 1; Debian's Chromium does) and PyAV has libx264, else VP8. ICE uses host candidates only
(no STUN or TURN server): the viewer is for this machine or its LAN. aiortc gathers every
candidate before it answers, so one request and one answer make the connection.

A peer whose connection fails or closes (the tab went away) is closed and unsubscribed, and so
is one that has not connected `CONNECT_TIMEOUT_S` after its answer (a tab closed during the
handshake, a page that never applied the answer: no state change ever comes); a stream's
encoder stops with its last peer, so nothing is encoded while nobody watches. Without
aiortc the routes answer 501 and the page shows MJPEG (`available()` says which).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily

from encoders.extras import install_hint
from streamer.watch.web._http import json_response
from streamer.watch.web._rtc_media import RtcLimits, SharedEncoder, packet_track_class

__all__ = ["RtcLimits", "WebRtc", "available"]

log = logging.getLogger("streamer.watch.web")

OFFER_LIMIT = 64 * 1024  # bytes of an offer, at most (Chromium's are ~6 KB)
PREFIX = "/api/webrtc/"
#: Seconds a peer has from its answer to connecting (on a LAN it takes well under one).
CONNECT_TIMEOUT_S = 15.0
GONE_KEPT = 1024  # closed peers' ids remembered, for a page's late hang-up


def available() -> bool:
    """Whether aiortc (the `webrtc` extra) is installed."""
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return False
    return True


class _Peer:
    """One browser's connection: its RTCPeerConnection, track and the encoder it reads."""

    __slots__ = ("encoder", "id", "pc", "stream", "track")

    def __init__(self, ident: str, stream: str, pc: Any, track: Any, encoder: SharedEncoder):
        self.id, self.stream, self.pc, self.track, self.encoder = ident, stream, pc, track, encoder


class WebRtc:
    """The viewer's WebRTC peers and the per-stream encoders they share.

    Args:
        limits: rate, size, bitrate, peers at most.
        streams: the names of the streams that can be watched now (read per request).
    """

    def __init__(self, limits: RtcLimits, streams: Callable[[], Any]) -> None:
        self.limits = limits
        self.available = available()
        self._streams = streams
        self._peers: dict[str, _Peer] = {}
        self._encoders: dict[tuple[str, str], SharedEncoder] = {}
        # Read by writer threads: replaced whole (never changed in place) on the event loop.
        self._by_stream: dict[str, tuple[SharedEncoder, ...]] = {}
        # ids of peers closed lately, oldest first: a DELETE of one of them is done, not 404
        self._gone: dict[str, None] = {}
        self._track_class: type | None = None
        self._closing: set[asyncio.Task] = set()
        self.refused = 0

    # -- frames (writer threads) ----------------------------------------------------------------

    @property
    def watched(self) -> bool:
        """Some stream has a WebRTC peer: frames must be drawn for it."""
        return bool(self._by_stream)

    def store(self, stream: str, image: np.ndarray) -> None:
        """Hand the frame just drawn to the stream's encoders, if any (returns at once)."""
        for encoder in self._by_stream.get(stream, ()):
            encoder.store(image)

    # -- numbers --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For /api/status: whether WebRTC is offered, its peers and encoders now."""
        return {
            "available": self.available,
            "stamp_clock": self.limits.stamp_clock,
            "peers": len(self._peers),
            "encoders": len(self._encoders),
            "streams": {
                name: {"codec": codec, "peers": enc.peers, "frames": enc.frames,
                       "bytes": enc.bytes}
                for (name, codec), enc in self._encoders.items()
            },
        }  # fmt: skip

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Prometheus gauges (registered on the viewer's registry)."""
        yield GaugeMetricFamily("streamer_webrtc_peers", "WebRTC viewers connected now",
                                value=len(self._peers))  # fmt: skip
        yield GaugeMetricFamily(
            "streamer_webrtc_encoders",
            "Streams being encoded for WebRTC now (one encoder per stream and codec)",
            value=len(self._encoders),
        )

    # -- routes ---------------------------------------------------------------------------------

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(PREFIX + "{name}", self.offer)
        app.router.add_delete(PREFIX + "peers/{peer}", self.hang_up)

    @staticmethod
    def takes_body(request: web.Request) -> bool:
        """The offer carries a body (the guard lets it through)."""
        return request.method == "POST" and request.path.startswith(PREFIX)

    async def offer(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not self.available:
            return _error(501, f"WebRTC needs aiortc: {install_hint('webrtc')}; the page shows "
                               "MJPEG meanwhile")  # fmt: skip
        if name not in self._streams():
            return _error(404, f"no stream named {name!r}; /api/status lists them")
        if len(self._peers) >= self.limits.max_peers:
            self.refused += 1
            return _error(503, f"{len(self._peers)} WebRTC viewers already (the most); "
                               "use MJPEG (/streams/NAME/mjpeg)")  # fmt: skip
        sdp = await _read_offer(request)
        peer = await self._connect(name, sdp)
        local = peer.pc.localDescription
        return json_response({"type": local.type, "sdp": local.sdp, "peer": peer.id,
                              "codec": peer.encoder.codec})  # fmt: skip

    async def hang_up(self, request: web.Request) -> web.Response:
        ident = request.match_info["peer"]
        peer = self._peers.get(ident)
        if peer is None:
            if ident in self._gone:  # closed already (its connection failed first): done
                return json_response({"closed": ident})
            return _error(404, "no such WebRTC peer")
        await self._close(peer)
        return json_response({"closed": peer.id})

    # -- peers ----------------------------------------------------------------------------------

    async def _connect(self, stream: str, sdp: str) -> _Peer:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        codec = _choose_codec(sdp)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # host candidates only
        encoder = self._encoder(stream, codec)
        if self._track_class is None:
            self._track_class = packet_track_class()
        track = self._track_class(self.limits.queue, encoder.want_key)
        peer = _Peer(secrets.token_urlsafe(16), stream, pc, track, encoder)
        self._peers[peer.id] = peer

        @pc.on("connectionstatechange")
        async def changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._close(peer)

        try:
            _send_only(pc, track, codec, encoder)  # before the offer: it picks this transceiver
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await self._close(peer)
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"cannot answer this WebRTC offer: {exc}"}),
                content_type="application/json",
            ) from exc
        encoder.subscribe(track)
        asyncio.get_running_loop().call_later(CONNECT_TIMEOUT_S, self._unless_connected, peer)
        log.info("webrtc: peer %s watches %s (%s)", peer.id, stream, codec)
        return peer

    def _unless_connected(self, peer: _Peer) -> None:
        if self._peers.get(peer.id) is peer and peer.pc.connectionState in ("new", "connecting"):
            log.info("webrtc: peer %s did not connect within %.0f s; closed", peer.id,
                     CONNECT_TIMEOUT_S)  # fmt: skip
            self._close_soon([peer])

    def _encoder(self, stream: str, codec: str) -> SharedEncoder:
        encoder = self._encoders.get((stream, codec))
        if encoder is None:
            loop = asyncio.get_running_loop()
            encoder = SharedEncoder(stream, codec, self.limits, loop, self._encoder_failed)
            self._encoders[(stream, codec)] = encoder
            self._index()
        return encoder

    async def _close(self, peer: _Peer) -> None:
        if self._peers.pop(peer.id, None) is None:
            return  # closed already (the page's DELETE, then the connection's state)
        self._gone[peer.id] = None
        if len(self._gone) > GONE_KEPT:
            del self._gone[next(iter(self._gone))]
        peer.encoder.unsubscribe(peer.track)
        peer.track.stop()
        key = (peer.stream, peer.encoder.codec)
        if peer.encoder.peers == 0 and self._encoders.get(key) is peer.encoder:
            del self._encoders[key]
            self._index()
            await peer.encoder.close()
        await peer.pc.close()
        log.info("webrtc: peer %s left %s", peer.id, peer.stream)

    def _index(self) -> None:
        by_stream: dict[str, tuple[SharedEncoder, ...]] = {}
        for (name, _), encoder in self._encoders.items():
            by_stream[name] = (*by_stream.get(name, ()), encoder)
        self._by_stream = by_stream

    def remove(self, stream: str) -> None:
        """Close the peers of a stream that left the run (event loop; in the background)."""
        self._close_soon([p for p in self._peers.values() if p.stream == stream])

    def _encoder_failed(self, encoder: SharedEncoder) -> None:
        self._close_soon([p for p in self._peers.values() if p.encoder is encoder])

    def _close_soon(self, peers: list[_Peer]) -> None:
        for peer in peers:
            task = asyncio.get_running_loop().create_task(self._close(peer))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every peer (the viewer stops)."""
        for peer in list(self._peers.values()):
            await self._close(peer)
        await asyncio.gather(*self._closing)


def _send_only(pc: Any, track: Any, codec: str, encoder: SharedEncoder) -> None:
    """Send `track` with `codec` only (the one the shared encoder makes), and route the
    browser's keyframe requests to the encoder. Called before the offer is applied: aiortc
    then takes this transceiver for the offer's video and negotiates within its codecs."""
    from aiortc import RTCRtpSender

    transceiver = pc.addTransceiver(track, direction="sendonly")
    sender = transceiver.sender
    names = {f"video/{codec}".lower(), "video/rtx"}
    codecs = RTCRtpSender.getCapabilities("video").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() in names])
    # aiortc answers RTCP PLI/FIR by forcing the next *encoded* frame to be a keyframe; packets
    # it is handed are not encoded there, so the request goes to the shared encoder instead.
    sender._send_keyframe = encoder.want_key


def _choose_codec(sdp: str) -> str:
    """H264 when the offer has it with packetization mode 1 and PyAV can encode it, else VP8."""
    offers_h264 = any(
        line.startswith("a=fmtp:") and "packetization-mode=1" in line
        and ("profile-level-id=42" in line)
        for line in sdp.splitlines()
    )  # fmt: skip
    return "H264" if offers_h264 and _can_encode("libx264") else "VP8"


def _can_encode(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:  # PyAV raises its own UnknownCodecError, or ValueError by version
        return False
    return True


async def _read_offer(request: web.Request) -> str:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    sdp = body.get("sdp") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("type") != "offer"
        or not isinstance(sdp, str)
        or not sdp
    ):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": 'the body must be JSON {"type": "offer", "sdp": ...}'}),
            content_type="application/json",
        )
    return sdp


def _error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)
