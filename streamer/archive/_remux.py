"""The segment writer: a live stream's tapped packets, remuxed into fragmented MP4 segments.

The source's decode thread only queues each packet with its arrival time (`SegmentWriter`,
the `PacketSink`); one writer thread per stream does the rest: it waits for a key frame, opens
a segment there, rebases the packets' own timestamps so the segment starts at 0, and starts
the next segment at the first key frame after `segment_s`, at every new connection, and after
it fell behind or failed. Every segment therefore starts with a key frame and plays alone.

The files are fragmented (`empty_moov`: the header first, then a fragment at each key frame and
at least every second): a segment cut short by a crash or `kill -9` plays up to its last
fragment, at most a second short.

A connection whose codec MP4 cannot hold (an MJPEG camera over HTTP) is declined, and the
source then hands the same sink its decoded frames, which the same writer thread encodes into
segments of the same kind (`streamer.archive._encode`); a camera's frames always go that way.

A write error (the disk is full) ends the segment where it is, says so in the tap's state, and
drops packets until a retry `RETRY_S` later (`streamer.archive._segment_log`); the stream goes
on meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.error

from streamer.archive._encode import FrameItem, FrameSegments, FramesStart, frames_allowed
from streamer.archive._segment_log import SEGMENT_MP4, SegmentLog
from streamer.archive._segments import hold_writer_lock, repair
from streamer.archive._sink_state import RecorderSettings, SinkState
from streamer.archive._streams import (
    MP4_VIDEO,
    Connection,
    adts_config,
    copy_parameters,
    unwrap_adts,
)
from streamer.sources.tap import TapConnection

if TYPE_CHECKING:
    from streamer.core.frame import Frame
    from streamer.sources.info import VideoInfo

__all__ = ["SegmentWriter"]

log = logging.getLogger("streamer.archive")

MAX_BACKLOG_BYTES = 32 * 2**20  # packets queued for a stalled disk before dropping
CLOSE_WAIT_S = 10.0  # how long `close` waits for the writer to finish its files

# Queue items besides (packet, arrival wall time): a connection, its end, falling behind, close.
_STOP = "stop"
_BEHIND = "behind"
_CLOSE = "close"


@dataclass(slots=True)
class _Open:
    """The segment being written."""

    output: Any
    video: Any
    audio: Any | None
    file: str
    path: Path
    offset: float  # the connection's media time (s) of its first key frame
    start_wall: float
    offsets: dict[int, int] = field(default_factory=dict)  # stream index → ticks to subtract
    last_dts: dict[int, int] = field(default_factory=dict)
    frames: int = 0
    end: float = 0.0  # media seconds covered so far
    step: int = 0  # the last video frame's duration in ticks, for packets that carry none


class SegmentWriter:
    """A recorder's sink, where the source runs: the decode thread queues, a writer thread
    writes (see the module's docstring). It is both a `PacketSink` (packets copied) and a
    `FrameSink` (frames encoded, `streamer.archive._encode`), one connection one way.

    Args:
        recorder: the tap it works for: where the files go, and whose `state` it keeps.
    """

    def __init__(self, recorder: RecorderSettings) -> None:
        self.shared = SinkState(recorder)
        self.folder = recorder.folder
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._queued = 0  # bytes queued (decode thread) ...
        self._written = 0  # ... and taken off the queue (writer thread)
        self._behind = False
        self._frames_allowed = 0  # frames that may wait for the encoder (per connection)
        self._frames_queued = 0  # frames queued (decode thread) ...
        self.frames_taken = 0  # ... and taken off the queue (writer thread)
        self._lock_fd: int | None = None
        self._thread: threading.Thread | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock_fd = hold_writer_lock(self.folder)
            repair(self.folder)
        except BlockingIOError:
            self.shared.set(state="failed", detail=f"{self.folder}: another process records it")
            return
        except OSError as exc:
            self.shared.set(state="failed", detail=f"cannot record into {self.folder}: {exc}")
            return
        self._thread = threading.Thread(
            target=self._run, name=f"record:{recorder.stream}", daemon=True
        )
        self._thread.start()

    # -- the decode thread -------------------------------------------------------------------

    def start(self, connection: TapConnection) -> bool:
        """Take the connection when its video can go into MP4 (see `MP4_VIDEO`)."""
        if self._closed or self._thread is None:
            return False
        codec = connection.info.codec
        if codec not in MP4_VIDEO:
            self.shared.set(
                state="declined",
                detail=f"{codec} video cannot be copied into MP4; record it by encoding",
            )
            return False
        try:
            copied = copy_parameters(connection, self.shared.recorder.audio)
        except (ValueError, av.FFmpegError) as exc:
            self.shared.set(state="declined", detail=f"{codec} video cannot be copied: {exc}")
            return False
        self._queue.put(copied)
        return True

    def packet(self, packet: av.Packet) -> None:
        """Queue the packet (a reference, no copy); drop it when the writer is far behind."""
        if self._closed:
            return
        if self._queued - self._written > MAX_BACKLOG_BYTES:
            if not self._behind:
                self._behind = True
                self._queue.put(_BEHIND)
            self.shared.add_dropped(1)
            return
        self._behind = False
        self._queued += packet.size
        self._queue.put((packet, time.time()))

    def start_frames(self, info: VideoInfo) -> bool:
        """Take a connection to record by encoding its frames (one whose packets were
        declined, or a camera's)."""
        if self._closed or self._thread is None:
            return False
        self._frames_allowed = frames_allowed(info)
        self._queue.put(FramesStart(info))
        return True

    def frame(self, frame: Frame) -> None:
        """Queue the frame (a reference, no copy) for the encoder; drop it, and count it,
        when the encoder is that far behind."""
        if self._closed:
            return
        if self._frames_queued - self.frames_taken >= self._frames_allowed:
            self.shared.add_dropped(1)
            return
        self._frames_queued += 1
        # When it was captured on the wall clock (`captured` is monotonic).
        wall = time.time() - (time.monotonic() - frame.captured)
        self._queue.put(FrameItem(frame, wall))

    def stop(self) -> None:
        if not self._closed:
            self._queue.put(_STOP)

    def close(self) -> None:
        """Finish the segment being written (what is queued goes in first) and stop."""
        if self._closed and self._lock_fd is None:
            return
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_CLOSE)
            self._thread.join(CLOSE_WAIT_S)
            if self._thread.is_alive():
                log.warning("%s: the recording writer is still busy; leaving it", self.folder)
                return
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self.shared.state.state != "failed":
            self.shared.set(state="closed", current=None)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve(_Writer(self.shared))
        except Exception as exc:  # a bug: say so, and stop taking packets; the stream goes on
            log.exception("%s: the recording writer failed", self.folder)
            detail = f"recording stopped: {type(exc).__name__}: {exc}"
            self.shared.set(state="failed", detail=detail)
            self._closed = True

    def _serve(self, writer: _Writer) -> None:
        encoder = FrameSegments(self.shared, writer.log)
        while True:
            item = self._queue.get()
            if isinstance(item, FrameItem):
                self.frames_taken += 1
                encoder.frame(item.frame, item.wall)
            elif isinstance(item, tuple):
                packet, wall = item
                self._written += packet.size
                writer.packet(packet, wall)
            elif isinstance(item, Connection):
                encoder.disconnect()
                writer.connect(item)
            elif isinstance(item, FramesStart):
                writer.disconnect()
                encoder.connect(item.info)
            elif item == _STOP:
                writer.disconnect()
                encoder.disconnect()
            elif item == _BEHIND:
                writer.fell_behind()
            elif item == _CLOSE:
                writer.finish()
                encoder.disconnect()
                return


class _Writer:
    """The writer thread's side of copied packets: segments opened, written and closed."""

    def __init__(self, shared: SinkState) -> None:
        self.shared = shared
        self.folder = shared.folder
        self.segment_s = shared.recorder.segment_s
        self.log = SegmentLog(shared)
        self.conn: Connection | None = None
        self.open: _Open | None = None

    def connect(self, conn: Connection) -> None:
        self.disconnect()
        self.log.connection((conn.codec, conn.width, conn.height))
        self.conn = conn

    def disconnect(self) -> None:
        self._close(complete=True)
        self.conn = None

    def fell_behind(self) -> None:
        self._close(complete=True)
        self.log.reason = "resync"
        self.shared.set(detail="the disk fell behind: packets dropped (see `dropped`)")

    def finish(self) -> None:
        self.disconnect()

    def packet(self, packet: av.Packet, wall: float) -> None:
        conn = self.conn
        if conn is None:
            return
        index = packet.stream_index
        video = index == conn.video_index
        if not video and index != conn.audio_index:
            return
        if packet.dts is None and packet.pts is None:
            return
        if video:
            self._time(packet, wall, conn)
            if packet.is_keyframe:
                conn.keys += 1
                if self._cut_here(packet, conn):
                    self._close(complete=True)
                    self._open(packet, conn)
        elif conn.adts:
            conn.asc = conn.asc or adts_config(bytes(packet)[:7])
            unwrapped = unwrap_adts(packet)
            if unwrapped is None:
                return
            packet = unwrapped
        if self.open is not None:
            self._write(packet, video, index)
        elif self.log.retry_at is not None:
            self.shared.add_dropped(1)

    def _time(self, packet: av.Packet, wall: float, conn: Connection) -> None:
        """Refine the connection's wall time of media time 0: the earliest that any packet
        allows (packets read in a burst after a stall arrive late, never early)."""
        at = wall - float((packet.dts if packet.dts is not None else packet.pts) * packet.time_base)
        if conn.wall0 is None or at < conn.wall0:
            conn.wall0 = at
            if self.open is not None:
                self.open.start_wall = at + self.open.offset

    def _cut_here(self, packet: av.Packet, conn: Connection) -> bool:
        """Whether this key frame starts a new segment."""
        if self.open is None:
            if conn.adts and conn.asc is None and conn.keys < 2:
                return False  # MP4 needs the audio's configuration first: from its 1st frame
            return self.log.may_open()
        return _seconds(packet) - self.open.offset >= self.segment_s

    def _open(self, packet: av.Packet, conn: Connection) -> None:
        offset = _seconds(packet)
        assert conn.wall0 is not None
        start_wall = conn.wall0 + offset
        file, path = self.log.new_file(start_wall)
        output = None
        try:
            output = av.open(str(path), "w", format="mp4", container_options=SEGMENT_MP4)
            video = output.add_stream_from_template(conn.video, opaque=True)
            audio = None
            if conn.audio is not None and (conn.asc or not conn.adts):
                audio = output.add_stream_from_template(conn.audio, opaque=True)
                if conn.adts:
                    audio.codec_context.extradata = conn.asc
            self.log.opened(
                file, start_wall, offset, codec=conn.codec, width=conn.width,
                height=conn.height,
                audio=audio.codec_context.name if audio is not None else None,
            )  # fmt: skip
        except (OSError, ValueError, av.FFmpegError) as exc:
            if output is not None:
                with contextlib.suppress(OSError, ValueError, av.FFmpegError):
                    output.close()
            self.log.failed(exc, path)
            return
        self.open = _Open(output, video, audio, file, path, offset, start_wall)
        self.log.started(path, "copy")

    def _write(self, packet: av.Packet, video: bool, index: int) -> None:
        seg = self.open
        assert seg is not None
        if not video and seg.audio is None:
            return
        offset = seg.offsets.get(index)
        if offset is None:
            offset = seg.offsets[index] = round(seg.offset / packet.time_base)
        dts = (packet.dts if packet.dts is not None else packet.pts) - offset
        pts = (packet.pts if packet.pts is not None else dts + offset) - offset
        last = seg.last_dts.get(index)
        if last is not None and dts <= last:
            if not video:
                return  # an audio packet out of order: drop it
            dts = last + 1  # video must not lose a packet: nudge it after the previous one
        if dts < 0:
            return  # audio from before the segment's first key frame
        packet.dts, packet.pts = dts, max(pts, dts)
        seg.last_dts[index] = dts
        if video:  # before muxing, which moves the timestamps to the file's time base
            if last is not None:
                seg.step = dts - last
            lasts = packet.duration or seg.step
            seg.end = max(seg.end, float((packet.pts + lasts) * packet.time_base))
        packet.stream = seg.video if video else seg.audio
        try:
            seg.output.mux(packet)
        except (OSError, ValueError, av.FFmpegError) as exc:
            self._failed(exc)
            return
        if video:
            seg.frames += 1

    def _close(self, *, complete: bool) -> None:
        seg, self.open = self.open, None
        if seg is None:
            return
        try:
            seg.output.close()
        except (OSError, ValueError, av.FFmpegError) as exc:
            self._failed(exc, closing=seg)
            return
        self.log.closed(seg.file, seg.path, seg.start_wall, seg.end, seg.frames,
                        complete=complete)  # fmt: skip

    def _failed(self, exc: BaseException, closing: _Open | None = None) -> None:
        """A write failed: end the segment (it plays to its last fragment), say why, drop
        packets until a retry."""
        seg = closing or self.open
        self.open = None
        if seg is not None and closing is None:
            # The trailer cannot be written either: the fragments already are.
            with contextlib.suppress(OSError, ValueError, av.FFmpegError):
                seg.output.close()
        if seg is not None:
            self.log.closed(seg.file, seg.path, seg.start_wall, seg.end, seg.frames,
                            complete=False)  # fmt: skip
            self.log.failed(exc, seg.path)


def _seconds(packet: av.Packet) -> float:
    ticks = packet.dts if packet.dts is not None else packet.pts
    return float(ticks * packet.time_base)
