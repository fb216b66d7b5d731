"""Video files through PyAV, decoded in a thread, with backpressure.

Every frame is delivered (the file contract): when the pipeline is slower than decoding, the
decode thread waits for room in the outbox. A corrupt packet is skipped and counted; a file
that ends early (truncated) delivers what it decoded and reports where it stopped. How frames
are decoded and converted is shared with network streams (`streamer.sources._pyav`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import av.error

from streamer.core.background import start_in_thread
from streamer.core.channel import Channel, ChannelClosed, DropPolicy
from streamer.core.frame import Frame
from streamer.errors import SourceDecodeError, SourceNotFoundError, SourceOpenError
from streamer.sources._handoff import Handoff, put_and_wait
from streamer.sources._pyav import FrameConverter, configure_decoder, describe, main_stream
from streamer.sources._pyav import to_rgb as to_rgb  # re-exported: `streamer.bench` uses it
from streamer.sources.base import SourceBase
from streamer.sources.hwaccel import hwaccel_for
from streamer.sources.info import VideoInfo
from streamer.sources.names import FILE_SUFFIXES
from streamer.sources.options import DecodePlan
from streamer.sources.pool.wire import FileSpec
from streamer.sources.status import SourceStatus
from streamer.sources.tap import PacketTap

__all__ = ["FileSource", "VideoInfo", "probe_video"]

log = logging.getLogger("streamer.sources")

# What a folder given as an input is searched for, to say how to give its videos.
_IN_FOLDERS = (*FILE_SUFFIXES, ".ts", ".m2ts", ".mts", ".3gp")


def _folder_fix(path: str) -> str:
    """How to give a folder's videos: each is an input of its own."""
    videos = sorted(p.name for p in Path(path).iterdir() if p.suffix.lower() in _IN_FOLDERS)
    if not videos:
        return f"It holds no video files ({', '.join(_IN_FOLDERS)}). Fix: give a video file."
    suffixes = sorted({Path(name).suffix for name in videos})
    pattern = os.path.join(path, f"*{suffixes[0]}" if len(suffixes) == 1 else "*")
    shown = ", ".join(videos[:3]) + (", …" if len(videos) > 3 else "")
    return (f"Fix: give its videos, each an input of its own: {pattern} (it holds "
            f"{len(videos)}: {shown}).")  # fmt: skip


def _open_container(path: str, hwaccel: str | None = None) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise SourceNotFoundError(f"input {path!r} does not exist. Fix: check the path.")
    if os.path.isdir(path):
        raise SourceOpenError(f"input {path!r} is a folder, not a video file. {_folder_fix(path)}")
    if os.path.getsize(path) == 0:
        raise SourceOpenError(f"input {path!r} is empty (0 bytes): not a video.")
    try:
        return av.open(path, metadata_errors="ignore", hwaccel=hwaccel_for(hwaccel))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        if _mp4_without_index(path):  # FFmpeg logs "moov atom not found", raises InvalidData
            raise SourceOpenError(
                f"input {path!r} is an MP4/MOV without its index (no 'moov' box): the "
                "recording or download that wrote it did not finish, and without the index no "
                "frame can be found in it. Fix: let the program writing it finish, or fetch it "
                "again; tools such as untrunc rebuild the index from a whole file of the same "
                "camera. (streamer's own live recordings are fragmented MP4s, which stay "
                "readable when cut short.)"
            ) from exc
        raise SourceOpenError(
            f"input {path!r} is not a readable video ({exc}). Fix: give a video file "
            "(MP4, MKV, MOV, WebM, AVI, …) that ffprobe can read."
        ) from exc


def _mp4_without_index(path: str) -> bool:
    """Whether `path` is an ISO media file (MP4, MOV: 'ftyp' first) whose top-level boxes,
    read to its end, hold media ('mdat') but no index ('moov'): one written last that never
    was."""
    boxes = set()
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            at = 0
            while at + 8 <= size and len(boxes) < 1000:
                fh.seek(at)
                head = fh.read(16)
                length, kind = int.from_bytes(head[:4], "big"), head[4:8]
                if length == 1 and len(head) == 16:  # a 64-bit size follows
                    length = int.from_bytes(head[8:16], "big")
                elif length == 0:  # to the end of the file
                    length = size - at
                if length < 8 or (not boxes and kind != b"ftyp"):
                    break
                boxes.add(kind)
                at += length
    except OSError:
        return False
    return {b"ftyp", b"mdat"} <= boxes and not boxes & {b"moov", b"moof"}


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open a file, check that it has a decodable video stream and describe it.

    Raises:
        SourceNotFoundError: the path does not exist.
        SourceOpenError: the file is empty, not a media file, has no video stream, or its codec
            cannot be decoded.
    """
    path = os.fspath(path)
    with _open_container(path) as container:
        return describe(path, container)


class FileSource(SourceBase):
    """A video file as a stream of `Frame`s.

    Args:
        path: the video file (probed now: a file that is not a readable video is refused here).
        name: stream name for the frames; defaults to the file's stem.
        live: the live contract for this file (freshest frames win) rather than the file
            contract (every frame, backpressure), which is the default.
        paced: play the file at its own frame rate, as a camera would deliver it (for live runs
            on recorded video); then frames are offered without waiting, and a full outbox with
            the drop-oldest policy drops instead of slowing the file down. None: paced when live.

    `status.state` is "playing", then "ended" once the file has been read to its end (or as
    far as it decodes: `incomplete` then holds a `SourceDecodeError` that says where it
    stopped); a stopped source stays "playing". `status.frames` counts the frames read and
    `status.damaged` the packets that failed to decode and were skipped.

    Raises:
        SourceNotFoundError, SourceOpenError: see `probe_video`.
    """

    connects = False
    path: str  # a file's are always known: set at construction
    info: VideoInfo

    def __init__(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        live: bool = False,
        paced: bool | None = None,
    ) -> None:
        path = os.fspath(path)
        super().__init__(
            name or Path(path).stem,
            live=live,
            info=probe_video(path),
            status=SourceStatus(state="playing"),
            path=path,
        )
        self.paced = live if paced is None else paced
        self._size = os.path.getsize(path)  # to tell a file still being written at its end

    def worker_spec(self) -> FileSpec:
        """A decode worker opens the same file by its path."""
        return FileSpec(self.path, self.name, live=self.live, paced=self.paced)

    def lost(self, message: str, pts: float | None) -> None:
        """The decode worker reading this file is gone: the file ends incomplete, with the
        frames that reached the pipeline."""
        pts = None if pts is None else pts - self.info.origin  # as the outputs count it
        self.incomplete = SourceDecodeError(message, frames=self.status.frames, pts=pts)
        self.status.state = "ended"
        log.error("%s", self.incomplete)

    async def run(
        self,
        out: Channel[Frame],
        stop: asyncio.Event,
        plan: DecodePlan = DecodePlan(),  # noqa: B008 (frozen, so sharing is safe)
        tap: PacketTap | None = None,
    ) -> None:
        """Decode every frame into `out` in a thread of its own, then close it. Returns early
        when `stop` is set. A file is never copied: it refuses a `tap` (ConfigError).

        Its own thread, not one of the loop's default pool: a file holds its thread for as long
        as it plays, and the pool (cores + 4 threads) would start the files beyond it only as
        others end, and leave no thread for the run's other short blocking calls meanwhile."""
        self._refuse_tap(tap)
        loop = asyncio.get_running_loop()
        halt = threading.Event()
        try:
            await start_in_thread(self._decode_into, plan, out, loop, halt, stop,
                                  name=f"decode-{self.name}")  # fmt: skip
        finally:
            halt.set()
            await out.close()

    def _decode_into(
        self, plan: DecodePlan, out: Channel[Frame], loop: asyncio.AbstractEventLoop,
        halt: threading.Event, stop: asyncio.Event,
    ) -> None:  # fmt: skip
        clock: tuple[float, float] | None = None  # (monotonic, pts) of the first paced frame
        for frame in self._frames(plan):
            if halt.is_set() or stop.is_set():
                return
            if self.paced:
                clock = clock or (time.monotonic(), frame.pts)
                if halt.wait(max(0.0, clock[0] + frame.pts - clock[1] - time.monotonic())):
                    return
                frame = frame.replace(captured=time.monotonic())
            if out.policy is DropPolicy.DROP_OLDEST:
                loop.call_soon_threadsafe(_offer, out, frame)
            elif put_and_wait(loop, out.put(frame), halt) is not Handoff.DONE:
                return

    def _frames(self, plan: DecodePlan) -> Iterator[Frame]:
        """The file's frames, decoded in this (decode) thread; counts them in `status`."""
        status = self.status
        with _open_container(self.path, plan.hwaccel) as container:
            stream = main_stream(container, "video")  # the one `describe` described
            configure_decoder(stream, plan, live=False, name=self.name)
            convert = FrameConverter(plan, self.name)
            time_base = Fraction(stream.time_base)
            step = _frame_step(self.info, time_base)
            last_raw: int | None = None
            try:
                for packet in container.demux(stream):
                    for decoded in self._decode_packet(packet):
                        raw = decoded.pts if decoded.pts is not None else _next_pts(last_raw, step)
                        pts = float(raw * time_base)
                        if last_raw is None:
                            self._tell_undecodable_start(pts)
                        last_raw = raw
                        yield Frame(
                            stream=self.name,
                            index=status.frames,
                            pts=pts,
                            captured=time.monotonic(),
                            image=convert.picture(decoded, pts),
                            pts_raw=raw,
                            time_base=time_base,
                        )
                        status.frames += 1
            except av.error.FFmpegError as exc:
                self._stopped_early(f"reading stopped: {exc}", last_raw, time_base)
                status.state = "ended"
                return
        self._check_complete(last_raw, time_base)
        status.state = "ended"

    def _tell_undecodable_start(self, first: float) -> None:
        """A file cut between keyframes (a recording split by size, `ffmpeg -c copy` without
        `-ss` on a keyframe) opens with pictures that refer to frames it lacks: FFmpeg drops
        them, and the outputs begin at the first whole picture. Said once, so that a video
        shorter than its source and cues that start late have their reason."""
        info = self.info
        late = first - info.start
        # beyond what B-frame reordering or an edit list may leave before the first picture
        if late > max(0.25, 3 / float(info.fps or 25)):
            if info.frames and info.fps:  # what is left to decode: the progress bar's 100 %
                self.info = replace(info, frames=max(1, info.frames - round(late * info.fps)))
            log.warning(
                "%s: its first %.2f s do not decode (the file was cut before a keyframe, so "
                "those pictures refer to frames it does not hold); the outputs start at "
                "t=%.2f s, its first whole picture",
                self.name, late, first - info.origin,
            )  # fmt: skip

    def _decode_packet(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            return packet.decode()
        except av.error.InvalidDataError as exc:
            self.status.damaged += 1
            log.warning("%s: skipped a packet that does not decode (%s)", self.name, exc)
            return []

    def _check_complete(self, last_raw: int | None, time_base: Fraction) -> None:
        with contextlib.suppress(OSError):
            if os.path.getsize(self.path) != self._size:
                self._stopped_early(
                    "the file grew while it was read (another program is still writing it; "
                    "run again once it is finished)",
                    last_raw,
                    time_base,
                )
                return
        expected = self.info.frames
        read = self.status.frames
        # Containers round their frame counts and durations; two frames short is still whole.
        # Frames lost to damaged packets in the middle are counted and noted as such: a file
        # decoded to its last frame is not "ended early" (exit 3) for them.
        if expected and read < expected - 2 and not self._reached_the_end(last_raw, time_base):
            self._stopped_early(
                f"the file ends early: {read} of {expected} frames decoded "
                "(truncated or damaged file)",
                last_raw,
                time_base,
            )

    def _reached_the_end(self, last_raw: int | None, time_base: Fraction) -> bool:
        """Whether decoding got to the last frame the container announces (within two)."""
        info = self.info
        if last_raw is None or not info.duration or not info.fps:
            return False
        last_frame = info.start + info.duration - 1 / float(info.fps)
        return float(last_raw * time_base) >= last_frame - 2 / float(info.fps)

    def _stopped_early(self, why: str, last_raw: int | None, time_base: Fraction) -> None:
        # the last frame as the outputs name it: counted from 0, its time from the file's start
        pts = float(last_raw * time_base) - self.info.origin if last_raw is not None else None
        read = self.status.frames
        where = f"after frame {read - 1}" + (f" (t={pts:.3f} s)" if pts is not None else "")
        self.incomplete = SourceDecodeError(
            f"{self.path}: {why}; stopped {where}", frames=read, pts=pts
        )
        log.error("%s", self.incomplete)


def _offer(out: Channel[Frame], frame: Frame) -> None:
    """Put without waiting (on the loop thread); a closed outbox means nobody is reading."""
    with contextlib.suppress(ChannelClosed):
        out.put_nowait(frame)


def _frame_step(info: VideoInfo, time_base: Fraction) -> int:
    if info.fps:
        return max(1, round(1 / (info.fps * time_base)))
    return 1


def _next_pts(last: int | None, step: int) -> int:
    return 0 if last is None else last + step
