"""WebRTC media for the viewer: each stream's drawn frames encoded once, sent to every peer.

::

    writer thread ─► SharedEncoder.store (a reference) ─► its own thread: PyAV H.264 / VP8
                                                          └─► av.Packet ─► PacketTrack (a peer)
                                                                       └─► PacketTrack (a peer)

aiortc's `RTCRtpSender` packetizes an `av.Packet` that a track's `recv()` returns without
encoding it again (`Encoder.pack`), so however many browsers watch a stream, its frames are
encoded once. A peer needs a keyframe to start from and after it lost packets: a new peer, a
peer that fell behind, and the browser's own requests (RTCP PLI/FIR) make the next frame a
keyframe for everyone (cheap at these sizes, and rare).

The clock stamp (`stamp_clock`) is for measuring latency in the page: a row of black and white
blocks, in the frame's top-left corner, that holds the wall-clock time (ms) the frame was drawn
at, with its complement below so a reader can tell a clean read from a damaged one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.errors import ConfigError

log = logging.getLogger("streamer.watch.web")

CLOCK = fractions.Fraction(1, 90000)  # RTP's video clock: packet times in these units

STAMP_BITS = 32  # the wall time in ms, modulo 2**32 (49 days: the page compares near times)
STAMP_BLOCK = 16  # pixels per block side: survives JPEG and a 2 Mbit/s H.264 at 720p


@dataclass(frozen=True, slots=True)
class RtcLimits:
    """How the viewer's WebRTC video is made.

    Attributes:
        max_fps: frames encoded per second per stream, at most.
        bitrate: the encoder's target, bits per second.
        long_edge: frames are scaled down to this many pixels on their long side.
        keyframe_s: seconds between keyframes a peer can always start from.
        max_peers: WebRTC viewers at once; more are refused (the page falls back to MJPEG).
        queue: packets a peer may be behind before it skips to the next keyframe.
        stamp_clock: draw the clock stamp into every frame the viewer serves, WebRTC and
            MJPEG (`--webrtc-stamp`; on the viewer's copy: the files written never show it).
    """

    max_fps: float = 30.0
    bitrate: int = 2_000_000
    long_edge: int = 1280
    keyframe_s: float = 2.0
    max_peers: int = 16
    queue: int = 30
    stamp_clock: bool = False

    def __post_init__(self) -> None:
        for name in ("max_fps", "keyframe_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"webrtc {name} must be > 0, got {getattr(self, name)}")
        for name in ("bitrate", "long_edge", "max_peers", "queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"webrtc {name} must be ≥ 1, got {getattr(self, name)}")


def stamp_clock(image: np.ndarray, now_ms: int | None = None) -> None:
    """Draw the wall-clock time in ms (`now_ms`, default now) into `image`'s top-left corner,
    in place: one row of `STAMP_BITS` blocks (white = 1, most significant first) and its
    complement below. The page reads it back (`app.js`, `readStamp`)."""
    value = int(time.time() * 1000 if now_ms is None else now_ms) % (1 << STAMP_BITS)
    bits = np.array([(value >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)], np.uint8)
    rows = np.stack([bits, 1 - bits]) * 255  # (2, bits)
    block = np.kron(rows, np.ones((STAMP_BLOCK, STAMP_BLOCK), np.uint8))
    height, width = block.shape
    if image.shape[0] >= height and image.shape[1] >= width:
        image[:height, :width] = block[:, :, None]


def read_stamp(image: np.ndarray) -> int | None:
    """The value `stamp_clock` drew into `image` (same size), None when it does not read
    cleanly (the complement row disagrees)."""
    half = STAMP_BLOCK // 2
    centres = [half + i * STAMP_BLOCK for i in range(STAMP_BITS)]
    top = image[half, centres].mean(axis=-1) > 127
    bottom = image[STAMP_BLOCK + half, centres].mean(axis=-1) > 127
    if np.any(top == bottom):
        return None
    return int("".join("1" if bit else "0" for bit in top), 2)


def packet_track_class() -> type:
    """The `MediaStreamTrack` subclass that hands a peer the shared packets (aiortc loaded
    here, so the viewer runs without the `webrtc` extra)."""
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

    class _PacketTrack(MediaStreamTrack):
        """One peer's view of a `SharedEncoder`: its packets in order, from a keyframe on.

        Args:
            queue: packets it may be behind; past that it waits for the next keyframe.
            want_key: asks the encoder for a keyframe.
        """

        kind = "video"

        def __init__(self, queue: int, want_key: Callable[[], None]) -> None:
            super().__init__()
            self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue)
            self._want_key = want_key
            self._need_key = True
            self.sent = 0
            self.skipped = 0

        def offer(self, packet: Any) -> None:
            """A packet the encoder made (event loop)."""
            if self.readyState != "live" or (self._need_key and not packet.is_keyframe):
                return
            if self._queue.full():  # the peer fell behind: start again from a keyframe
                self._drain()
                self.skipped += 1
                self._need_key = True
                self._want_key()
                return
            self._need_key = False
            self._queue.put_nowait(packet)

        async def recv(self) -> Any:
            if self.readyState != "live":
                raise MediaStreamError
            packet = await self._queue.get()
            if packet is None:
                raise MediaStreamError
            self.sent += 1
            return packet

        def stop(self) -> None:
            super().stop()
            self._drain()
            self._queue.put_nowait(None)  # wakes the sender, which then ends

        def _drain(self) -> None:
            while not self._queue.empty():
                self._queue.get_nowait()

    return _PacketTrack


class SharedEncoder:
    """One stream's frames encoded once, on a thread of its own, for every peer subscribed.

    Runs while it has peers; `close()` ends the thread (the hub calls it when the last peer
    goes).

    Args:
        name: the stream.
        codec: "H264" or "VP8" (as SDP names them).
        limits: rate, size, bitrate, keyframe interval.
        loop: the event loop the peers live on (packets are handed over there).
        failed: called on the loop if encoding fails (logged once; the thread ends): the
            hub closes the peers, whose pages fall back to MJPEG.
    """

    def __init__(
        self,
        name: str,
        codec: str,
        limits: RtcLimits,
        loop: asyncio.AbstractEventLoop,
        failed: Callable[[SharedEncoder], None] = lambda encoder: None,
    ) -> None:
        self.name = name
        self.codec = codec
        self.limits = limits
        self.frames = 0  # frames encoded
        self.bytes = 0  # bytes of encoded video
        self._loop = loop
        self._failed = failed
        self._tracks: set[Any] = set()
        self._latest: np.ndarray | None = None  # written by the writer thread, taken here
        self._wake = threading.Event()
        self._key = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"webrtc-{name}", daemon=True)
        self._thread.start()

    @property
    def peers(self) -> int:
        return len(self._tracks)

    def store(self, image: np.ndarray) -> None:
        """Keep a reference to the frame just drawn (writer thread; returns at once)."""
        self._latest = image
        self._wake.set()

    def subscribe(self, track: Any) -> None:
        """A peer's track starts receiving (event loop); its first packet is a keyframe."""
        self._tracks.add(track)
        self._key.set()

    def unsubscribe(self, track: Any) -> None:
        self._tracks.discard(track)

    def want_key(self) -> None:
        """Make the next frame a keyframe (a peer lost packets or asked: RTCP PLI/FIR)."""
        self._key.set()

    async def close(self) -> None:
        """End the thread (waits for a frame being encoded)."""
        self._closed = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)

    def _deliver(self, packets: list[Any]) -> None:
        for packet in packets:
            self.bytes += packet.size
            for track in tuple(self._tracks):
                track.offer(packet)

    def _run(self) -> None:
        coder = _Coder(self.codec, self.limits)
        interval = 1.0 / self.limits.max_fps
        last = 0.0
        try:
            while not self._closed:
                if not self._wake.wait(0.5):
                    continue
                self._wake.clear()
                if (pause := last + interval - time.monotonic()) > 0:
                    time.sleep(pause)  # then the newest frame there is
                image, self._latest = self._latest, None
                if image is None or self._closed:
                    continue
                last = time.monotonic()
                key = self._key.is_set()
                self._key.clear()
                packets = coder.encode(image, key)
                self.frames += 1
                if packets:
                    with contextlib.suppress(RuntimeError):  # the loop closed: the run ended
                        self._loop.call_soon_threadsafe(self._deliver, packets)
        except Exception:
            log.exception("%s: cannot encode WebRTC video; its WebRTC viewers stop", self.name)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._failed, self)


class _Coder:
    """A PyAV encoder made for the first frame's size (and again when the size changes)."""

    def __init__(self, codec: str, limits: RtcLimits) -> None:
        self.codec = codec
        self.limits = limits
        self._context: Any = None
        self._size: tuple[int, int] = (0, 0)
        self._start = time.monotonic()
        self._pts = -1
        self._reformatter: Any = None  # one swscale context per output size, made with it

    def encode(self, image: np.ndarray, key: bool) -> list[Any]:
        from av.video.frame import PictureType

        from streamer.outputs.yuv import rgb_frame

        size = _fit(image.shape[1], image.shape[0], self.limits.long_edge)
        if size != self._size:
            from av.video.reformatter import VideoReformatter

            self._context, self._size, key = self._open(size), size, True
            self._reformatter = VideoReformatter()
        # Read in place where that is safe (`rgb_frame`) and scaled by one swscale context kept
        # from frame to frame: a copy and a new context per frame cost twice the conversion
        # (bench/colour_conversion.py).
        rgb = rgb_frame(image)
        frame = self._reformatter.reformat(rgb, width=size[0], height=size[1], format="yuv420p")
        # RTP times from the wall clock: the browser plays frames at the pace they were made.
        self._pts = max(self._pts + 1, round((time.monotonic() - self._start) / CLOCK))
        frame.pts, frame.time_base = self._pts, CLOCK
        if key:
            frame.pict_type = PictureType.I
        return list(self._context.encode(frame))

    def _open(self, size: tuple[int, int]) -> Any:
        import av

        limits = self.limits
        h264 = self.codec == "H264"
        context = av.CodecContext.create("libx264" if h264 else "libvpx", "w")
        context.width, context.height = size
        context.pix_fmt = "yuv420p"
        context.time_base = CLOCK
        context.framerate = fractions.Fraction(round(limits.max_fps), 1)
        context.bit_rate = limits.bitrate
        context.gop_size = max(1, round(limits.keyframe_s * limits.max_fps))
        if h264:  # what every browser decodes; no B-frames, no lookahead: a frame in, one out
            context.profile = "Baseline"
            context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        else:
            context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        return context


def _fit(width: int, height: int, long_edge: int) -> tuple[int, int]:
    """`width`×`height` scaled down to `long_edge` at most, both even (4:2:0 needs them so)."""
    scale = min(1.0, long_edge / max(width, height))
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)
