"""The reconnecting core shared by live sources (network streams and cameras).

One connection at a time runs in its own decode thread: open, then read frames until the input
ends or fails. The event loop supervises: it waits for the connection to finish or for the stop
event, classifies a failure as permanent or retryable, sleeps the backoff on a stop-aware wait,
and opens the next connection. So the loop never blocks, and a stop returns at once even while
FFmpeg sits in a blocking open: that thread is told to halt and ends by itself within its
timeouts, touching nothing once halted.

Frames reach the pipeline's channel on the loop's thread. Under `DropPolicy.DROP_OLDEST` (live)
the decode thread never waits: `loop.call_soon_threadsafe(put_nowait)` and the freshest frame
wins. Under `BLOCK` (`--no-drop`, remote files) it waits for room, like the file source.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from streamer.core.channel import Channel, ChannelClosed, DropPolicy
from streamer.core.frame import Frame
from streamer.core.redact import redact
from streamer.core.retry import Backoff
from streamer.errors import SourceError, SourceTimeout, SourceUnavailableError
from streamer.sources._handoff import Handoff, put_and_wait
from streamer.sources._timeline import Timeline
from streamer.sources.base import SourceBase
from streamer.sources.info import VideoInfo
from streamer.sources.options import DecodePlan, SourceOptions
from streamer.sources.status import SourceStatus
from streamer.sources.tap import FrameSink, PacketSink, PacketTap

log = logging.getLogger("streamer.sources")

# How long a stop waits for the decode thread to finish before leaving it to end by itself.
_JOIN_GRACE_S = 0.5
# While a source stays offline with the same error, its reconnect attempts are warned of again
# this often (the others are debug lines).
_REMIND_S = 600.0
_STOPPED = "stopped"
_ENDED = "ended"


class Reader(Protocol):
    """One open connection, used from its decode thread only.

    Attributes:
        info: what the connection says about the video.
        finite: the input announced an end (a clip, a remote file, a finished HLS playlist), so
            a clean end of input means the stream is over. Otherwise (a camera) it means the
            connection dropped, and the source reconnects.
        damaged: packets that failed to decode plus pictures decoded with errors on this
            connection so far; the source adds it to `status.damaged` (a local camera's
            reader counts none).
        tap: the run's sink, when it takes this connection's packets; None otherwise (its
            frames may then be recorded instead: `FrameSink`).
    """

    info: VideoInfo
    finite: bool
    damaged: int
    tap: PacketSink | None

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """Yield (RGB image, pts in `info.time_base` units or None); return at the end of input.

        Raises:
            SourceError: the connection failed or stalled.
        """
        ...

    def close(self) -> None: ...


class LiveSource(SourceBase):
    """A live source: reconnects with backoff, reports its state in `status`.

    Subclasses implement `_open_reader` (blocking; runs in the decode thread).

    Attributes:
        name: stream name (no credentials).
        spec: the source spec with credentials redacted.
        live: the live contract (reconnect on a drop; timestamps continue across reconnects).
            False (`--no-drop`, a remote file) resumes after the last frame instead.
        status: what the source is doing now.
        info: the current connection's video description, once connected.
        error: the error that made the source fail, when `status.state == "failed"`.
    """

    connects = True

    def __init__(self, spec: str, name: str, options: SourceOptions, *, live: bool = True):
        super().__init__(redact(name), live=live, info=None, status=SourceStatus())
        self.spec = redact(spec)
        self.options = options
        self._backoff = Backoff(options.reconnect)
        self._ever_online = False
        self._offline_at: float | None = None  # monotonic, for "back online after N s"
        self._warned: tuple[str, float] | None = None  # the last failure warned of, and when
        self._consumer_gone = False
        self._timeline = Timeline()
        self._sink: PacketSink | None = None  # the run's tap's sink, while it runs

    def _open_reader(self, resume_after: int | None) -> Reader:
        """Open one connection (blocking). `resume_after`: for non-live sources, the raw pts of
        the last frame delivered, to seek past. Raises `SourceError`."""
        raise NotImplementedError

    def _is_permanent(self, error: SourceError) -> bool:
        """Whether a failure at the first open is not worth retrying."""
        return not isinstance(error, SourceUnavailableError | SourceTimeout)

    async def run(
        self,
        out: Channel[Frame],
        stop: asyncio.Event,
        plan: DecodePlan = DecodePlan(),  # noqa: B008 (frozen, so sharing is safe)
        tap: PacketTap | None = None,
    ) -> None:
        """Decode frames into `out` until `stop` is set, the stream ends, or the source fails
        (permanent error, or `max_attempts` reached: `status.state` says which); reconnects
        with backoff on the way. Closes `out` when it returns. `plan`: what to make of each
        frame, for the sources that decode with PyAV (a camera's frames are RGB as read).
        `tap`: where packets go (`tappable` sources), and the frames of connections it does
        not copy when its sink is a `FrameSink`; its sink is closed (its files finished)
        before this returns. A source without packets refuses a tap that cannot encode."""
        if tap is not None:
            # Making the sink may touch the disk (a recorder's folder, lock, repairs).
            self._sink = await asyncio.to_thread(tap.sink)
            if not self.tappable and not isinstance(self._sink, FrameSink):
                sink, self._sink = self._sink, None
                await asyncio.to_thread(sink.close)
                self._refuse_tap(tap)
        try:
            await self._supervise(out, stop)
        finally:
            out.close_nowait()
            sink, self._sink = self._sink, None
            if sink is not None:  # finishing a file writes to disk: not on the loop
                await asyncio.to_thread(sink.close)

    async def _supervise(self, out: Channel[Frame], stop: asyncio.Event) -> None:
        attempts = 0
        while not stop.is_set() and not self._consumer_gone:
            if attempts:
                self.status.reconnects += 1
            attempts += 1
            outcome = await self._connection(out, stop)
            if outcome == _STOPPED:
                return
            if outcome == _ENDED:
                self.status.state = "ended"
                log.info("%s: stream ended after %d frames", self.name, self.status.frames)
                return
            delay = self._after_failure(outcome)
            if delay is None or await _stopped_within(stop, delay):
                return

    def _after_failure(self, error: SourceError) -> float | None:
        """Record a failed connection; return the delay before the next try, or None to give up."""
        status = self.status
        status.last_error = str(error)
        if not self._ever_online and self._is_permanent(error):
            self._fail(error, f"{error}")
            return None
        delay = self._backoff.next_delay()
        if delay is None:
            self._fail(error, f"gave up after {self._backoff.failures} failed attempts: {error}")
            return None
        if status.state != "offline":
            status.state = "offline"
            status.offline_since = time.time()
            self._offline_at = time.monotonic()
        # A warning when the failure is new, and a reminder every _REMIND_S while it lasts;
        # every attempt in between is a debug line (a dead camera retries ~6 times a minute).
        now, said = time.monotonic(), self._warned
        new = said is None or said[0] != str(error) or now - said[1] >= _REMIND_S
        log.log(logging.WARNING if new else logging.DEBUG, "%s: %s; reconnect attempt %d in "
                "%.1f s", self.name, error, status.reconnects + 1, delay)  # fmt: skip
        if new:
            self._warned = (str(error), now)
        return delay

    def _fail(self, error: SourceError, message: str) -> None:
        self.status.state = "failed"
        self.error = error
        log.error("%s failed: %s", self.name, message)

    async def _connection(self, out: Channel[Frame], stop: asyncio.Event) -> Any:
        """Run one connection in a decode thread; return _ENDED, _STOPPED or the SourceError."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        halt = threading.Event()
        thread = threading.Thread(
            target=self._thread_main,
            args=(loop, out, halt, done),
            name=f"source:{self.name}",
            daemon=True,  # a thread stuck in a blocking open must not hold up interpreter exit
        )
        thread.start()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((done, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not done.done():
                halt.set()
        if not done.done():
            await _join_briefly(thread, _JOIN_GRACE_S)
            return _STOPPED
        return done.result()

    def _thread_main(
        self,
        loop: asyncio.AbstractEventLoop,
        out: Channel[Frame],
        halt: threading.Event,
        done: asyncio.Future[Any],
    ) -> None:
        try:
            outcome: Any = self._read_connection(loop, out, halt)
        except SourceError as exc:
            # Handed on bare. Its traceback holds this frame, which holds `outcome`, which
            # holds the exception: a reference cycle that kept the closed connection's reader
            # and decoder (frame buffers, megabytes per stream) alive until a full garbage
            # collection, so RSS rose at every reconnect. The message says what happened.
            outcome = exc.with_traceback(None)
            outcome.__context__ = None  # PyAV's error, whose traceback holds the reader
        except BaseException as exc:  # a bug, not a source failure: surface it from run()
            _call(loop, _settle, done, None, exc)
            return
        _call(loop, _settle, done, outcome, None)

    def _read_connection(
        self, loop: asyncio.AbstractEventLoop, out: Channel[Frame], halt: threading.Event
    ) -> str:
        resume = None if self.live else self._timeline.last_raw
        reader = self._open_reader(resume)
        reported = 0  # of this connection's damaged count, already added to `status`
        frames_to: FrameSink | None = None
        try:
            if halt.is_set():
                return _STOPPED
            previous, self.info = self.info, reader.info
            if previous is not None and _shape(previous) != _shape(reader.info):
                # A camera reconfigured while it was away (another codec, profile or size):
                # decoding goes on with the new one; the outputs keep their first frame size.
                log.warning("%s: the stream came back as %s (was %s)", self.name,
                            _shape(reader.info), _shape(previous))  # fmt: skip
            self._timeline.new_connection(reader.info, rebase=self.live)
            hand_off = (
                self._hand_off_now if out.policy is DropPolicy.DROP_OLDEST else self._wait_room
            )
            online = False
            frames_to = self._frame_sink(reader)
            for image, raw in reader.frames():
                if halt.is_set() or self._consumer_gone:
                    return _STOPPED
                reported = self._report_damaged(loop, reader, reported)
                frame = self._timeline.stamp(self.name, image, raw)
                if frame is None:  # resuming: already delivered before the reconnect
                    continue
                if frames_to is not None:
                    frames_to.frame(frame)
                if not online:
                    online = True
                    _call(loop, self._went_online)
                if not hand_off(loop, out, halt, frame):
                    return _STOPPED
            if reader.finite:
                return _ENDED
            raise SourceUnavailableError(f"{self.spec}: the server closed the stream")
        finally:
            if not halt.is_set():  # packets that failed after the last picture count too
                self._report_damaged(loop, reader, reported)
            if frames_to is not None:
                frames_to.stop()
            reader.close()

    def _frame_sink(self, reader: Reader) -> FrameSink | None:
        """The sink that records this connection's frames by encoding them, if any: when the
        run's sink encodes, did not take the packets (declined, or there are none), and takes
        the frames."""
        sink = self._sink
        if reader.tap is not None or not isinstance(sink, FrameSink):
            return None
        return sink if sink.start_frames(reader.info) else None

    def _report_damaged(
        self, loop: asyncio.AbstractEventLoop, reader: Reader, reported: int
    ) -> int:
        """Post what `reader` counted as damaged since `reported` to `status.damaged` (on the
        loop, where the status is updated); return the reader's count. Counted per connection
        by the reader, summed over reconnects here."""
        damaged = reader.damaged
        if damaged > reported:
            _call(loop, self._add_damaged, damaged - reported)
        return damaged

    def _add_damaged(self, count: int) -> None:
        """On the loop."""
        self.status.damaged += count

    def _hand_off_now(
        self,
        loop: asyncio.AbstractEventLoop,
        out: Channel[Frame],
        halt: threading.Event,
        frame: Frame,
    ) -> bool:
        return _call(loop, self._deliver, out, frame)

    def _deliver(self, out: Channel[Frame], frame: Frame) -> None:
        """On the loop: hand a frame on; the channel drops the oldest when full."""
        try:
            out.put_nowait(frame)
        except ChannelClosed:  # the consumer closed its inbox: nobody wants frames any more
            self._consumer_gone = True
            return
        self.status.frames += 1

    def _wait_room(
        self,
        loop: asyncio.AbstractEventLoop,
        out: Channel[Frame],
        halt: threading.Event,
        frame: Frame,
    ) -> bool:
        """Hand a frame on through a BLOCK channel, waiting for room (nothing dropped)."""
        outcome = put_and_wait(loop, self._put(out, frame), halt)
        if outcome is Handoff.GONE:
            self._consumer_gone = True
        return outcome is Handoff.DONE

    async def _put(self, out: Channel[Frame], frame: Frame) -> None:
        await out.put(frame)
        self.status.frames += 1

    def _went_online(self) -> None:
        """On the loop: the connection delivers frames."""
        status = self.status
        if self._offline_at is not None:
            log.info(
                "%s: back online after %.1f s (%d reconnect attempts)",
                self.name,
                time.monotonic() - self._offline_at,
                status.reconnects,
            )
        elif not self._ever_online:
            log.info("%s: online (%s)", self.name, _describe(self.spec, self.info))
        status.state = "online"
        status.offline_since = None
        self._offline_at = None
        self._warned = None
        self._ever_online = True
        self._backoff.reset()


def _shape(info: VideoInfo) -> str:
    """What a reconnect can change about a stream: its codec and its frame size."""
    return f"{info.codec} {info.width}x{info.height}"


def _describe(spec: str, info: VideoInfo | None) -> str:
    if info is None:
        return spec
    fps = f" at {float(info.fps):g} fps" if info.fps else ", rate not stated"
    return f"{spec}, {info.width}×{info.height} {info.codec}{fps}"


def _call(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> bool:
    """`call_soon_threadsafe` from a decode thread; False once the loop is closed (the run that
    started the thread is long gone, so there is nobody to tell)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` unless `stop` is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _join_briefly(thread: threading.Thread, limit: float) -> None:
    """Give a halted decode thread a moment to close its connection cleanly (between two
    frames it notices at once); one blocked in FFmpeg finishes later, on its own."""
    deadline = time.monotonic() + limit
    while thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
