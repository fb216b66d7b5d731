"""Preview frames for the viewer: the newest drawn frame of each stream, as JPEG, for everyone.

The writer thread only stores a reference to the frame it just drew (`FrameSlot.store`); no
copy, no encoding. While someone watches a stream, one task per stream encodes its newest
frame at most `max_fps` times a second on a low-priority thread, once for all of its clients.
Each client then takes the newest JPEG when it is ready for one, so a slow client skips frames
instead of queueing them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from streamer.core.background import LowPriorityPool
from streamer.llm.images import encode_jpeg

log = logging.getLogger("streamer.watch.web")

BOUNDARY = "frame"


def mjpeg_part(jpeg: bytes) -> bytes:
    """One part of a `multipart/x-mixed-replace` MJPEG response."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode("ascii") + jpeg + b"\r\n"


class Jpeg:
    """One encoded preview: the JPEG, its MJPEG part, and when its frame was drawn."""

    __slots__ = ("drawn_at", "jpeg", "part", "version")

    def __init__(self, version: int, jpeg: bytes, drawn_at: float) -> None:
        self.version = version
        self.jpeg = jpeg
        self.part = mjpeg_part(jpeg)
        self.drawn_at = drawn_at


class FrameSlot:
    """The newest drawn frame of one stream and the newest JPEG made from it.

    Args:
        name: the stream.
        encode: `encode(image) -> jpeg bytes`, run on `pool`.
        pool: the low-priority threads that encode.
        interval: least seconds between two encodings (1 / max fps).
    """

    def __init__(
        self,
        name: str,
        encode: Callable[[np.ndarray], bytes],
        pool: LowPriorityPool,
        interval: float,
    ) -> None:
        self.name = name
        self._encode = encode
        self._pool = pool
        self._interval = interval
        # Written by the writer thread as one tuple (atomic under the GIL): (seq, image, time).
        self._latest: tuple[int, np.ndarray, float] | None = None
        self._seq = 0
        self._encoded = 0  # the seq of the frame `jpeg` was made from
        self.jpeg: Jpeg | None = None
        self.watchers = 0
        self.closed = False
        self._new = asyncio.Event()
        self._task: asyncio.Task | None = None

    def store(self, image: np.ndarray) -> None:
        """Keep a reference to the frame just drawn (writer thread; must return at once)."""
        self._seq += 1  # one writer thread per stream: no other thread writes it
        self._latest = (self._seq, image, time.monotonic())

    def watch(self) -> None:
        """A client starts watching: encode while anyone does."""
        self.watchers += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._encode_while_watched(), name=f"web-jpeg-{self.name}"
            )

    def unwatch(self) -> None:
        self.watchers -= 1

    async def next_jpeg(self, after: int) -> Jpeg | None:
        """The first JPEG newer than version `after` (waits for it); None once closed."""
        while not self.closed and (self.jpeg is None or self.jpeg.version <= after):
            await self._new.wait()
        return None if self.closed else self.jpeg

    async def fresh_jpeg(self, timeout: float) -> Jpeg | None:
        """A JPEG of a frame drawn from now on; the newest one there is after `timeout` s."""
        asked = time.monotonic()
        self.watch()
        try:
            async with asyncio.timeout(timeout):
                version = 0
                while (jpeg := await self.next_jpeg(version)) is not None:
                    if jpeg.drawn_at >= asked:
                        return jpeg
                    version = jpeg.version
        except TimeoutError:
            pass  # a stream that draws no new frames (ended, offline): its last one
        finally:
            self.unwatch()
        return self.jpeg

    def close(self) -> None:
        """Wake every waiting client for good (the viewer stops)."""
        self.closed = True
        self._new.set()
        if self._task is not None:
            self._task.cancel()

    async def _encode_while_watched(self) -> None:
        loop = asyncio.get_running_loop()
        while self.watchers > 0 and not self.closed:
            started = loop.time()
            latest = self._latest
            if latest is not None and latest[0] != self._encoded:
                self._encoded, image, drawn_at = latest
                try:
                    data = await self._pool.run(self._encode, image)
                except Exception:
                    log.exception("%s: cannot encode a preview frame; previews stop", self.name)
                    self.close()
                    return
                version = self.jpeg.version + 1 if self.jpeg is not None else 1
                self.jpeg = Jpeg(version, data, drawn_at)
                self._new.set()
                self._new = asyncio.Event()
            await asyncio.sleep(max(self._interval - (loop.time() - started), 0.005))


class FrameHub:
    """Every stream's `FrameSlot`, and whether frames are wanted at all.

    Args:
        streams: the run's stream names.
        max_fps: previews encoded per second per stream, at most.
        quality: JPEG quality (1..100).
        long_edge: previews are scaled down to this many pixels on their long side.
    """

    def __init__(self, streams: list[str], max_fps: float, quality: int, long_edge: int) -> None:
        self.pool = LowPriorityPool("web-jpeg", workers=1)

        def encode(image: np.ndarray) -> bytes:
            return encode_jpeg(image, long_edge=long_edge, quality=quality)

        self._encode, self._interval = encode, 1.0 / max_fps
        self.slots = {name: FrameSlot(name, encode, self.pool, self._interval) for name in streams}

    def add(self, stream: str) -> None:
        """A slot for a stream that joined the run (a name used before gets a new one)."""
        self.remove(stream)
        self.slots[stream] = FrameSlot(stream, self._encode, self.pool, self._interval)

    def remove(self, stream: str) -> None:
        """Forget a stream that left the run; its clients' responses end."""
        slot = self.slots.pop(stream, None)
        if slot is not None:
            slot.close()

    @property
    def watched(self) -> bool:
        return any(slot.watchers > 0 for slot in self.slots.values())

    def store(self, stream: str, image: np.ndarray) -> None:
        slot = self.slots.get(stream)
        if slot is not None and slot.watchers > 0:
            slot.store(image)

    async def close(self) -> None:
        for slot in self.slots.values():
            slot.close()
        await asyncio.to_thread(self.pool.shutdown)  # waits for an encoding in progress
