"""Video sink: H.264 MP4 (or any container PyAV writes by extension) with the input's timing.

Frames are written with their source timestamps (`pts_raw` in the source `time_base`), less
the input's start time (`origin`: what players show as 0), so the output has the same frame
count and timestamps as the input shows them, variable frame rate included. The input's audio
can be copied through packet by packet (no re-encode), moved back by the same start, and
interleaved with the video as it is written.

Every packet has a duration, which an encoder does not know for variable-rate input: the writer
holds each frame until the next one arrives (or until `close`), so a frame lasts until the next
one starts, exactly as in the input.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from streamer.errors import ConfigError, SinkError
from streamer.outputs._errors import open_error, write_error
from streamer.outputs.yuv import BT709, TV_RANGE, to_yuv420

__all__ = ["VideoWriter"]

log = logging.getLogger(__name__)

# Encoders that take x264-style `preset` and `crf` private options.
_X26X = frozenset({"libx264", "libx265"})


class VideoWriter:
    """Encodes RGB frames to a video file, keeping the source timestamps.

    The output is opened (header written) at construction, so a bad path fails at once.
    `write` and `close` block; call them from a worker thread. Both are thread-safe.

    Args:
        path: output file; the extension picks the container (".mp4", ".mkv", ".mov", ...).
        width: frame width in pixels. An odd size is padded by one pixel (the edge is copied),
            because H.264 in yuv420p needs even sizes.
        height: frame height in pixels; padded like `width`.
        time_base: the source time base; `write`'s `pts_raw` counts in these units.
        rate: nominal frame rate, or None (or 0) when unknown or variable. Used for the
            duration of the last frame and as the encoder's rate-control hint.
        audio_from: an input file whose audio is copied into the output (no re-encode), or
            None. When the file has no audio, or the container refuses its codec, the video
            is written without audio and a warning is logged.
        codec: video encoder name.
        preset: x264/x265 speed preset.
        crf: x264/x265 constant rate factor (lower is better quality, bigger files).
        threads: encoder threads; 0 lets the encoder choose.
        fragmented: write MP4/MOV as fragments (`empty_moov`, a fragment from each keyframe):
            a file cut short by a crash, `kill -9` or a full disk still plays up to its last
            complete fragment, where a plain MP4 (its index at the end) would not play at all.
            Other containers ignore it (Matroska is written progressively anyway).
        keyframe_every: at most this many frames between keyframes (so between fragments);
            None keeps the encoder's default (x264: 250).
        origin: the source tick written as 0, with the audio moved back as much: a file's
            start time (`VideoInfo.origin`; an MPEG-TS may start hours in, which players show
            as 0).

    Raises:
        SinkOpenError: the file cannot be created, the extension names no known container,
            or the container cannot hold the codec.

    Example:
        >>> with VideoWriter("out.mp4", width=640, height=360, time_base=Fraction(1, 25),
        ...                  rate=Fraction(25)) as video:  # doctest: +SKIP
        ...     for i, image in enumerate(images):
        ...         video.write(image, pts_raw=i)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction | None,
        audio_from: str | None = None,
        codec: str = "libx264",
        preset: str = "veryfast",
        crf: int = 20,
        threads: int = 0,
        fragmented: bool = False,
        keyframe_every: int | None = None,
        origin: int = 0,
    ) -> None:
        _check_args(width, height, time_base, rate)
        self._path = path = os.fspath(path)
        self._width, self._height, self._origin = width, height, int(origin)
        self._time_base = Fraction(time_base)
        self._rate = Fraction(rate) if rate else None
        self._pad = (height % 2, width % 2)
        if any(self._pad):
            log.warning(
                "%s: odd frame size %dx%d; padding to %dx%d (edge pixels copied) for yuv420p",
                path, width, height, width + self._pad[1], height + self._pad[0],
            )  # fmt: skip
        self._container = _open_container(path, fragmented)
        # what a full disk leaves of an MP4/MOV output (for the message): None for others
        self._mp4 = ("fragmented" if fragmented else "plain") if _fragmentable(path) else None
        self._failed = False  # a write failed and said why: finishing then says nothing more
        self._audio: _AudioCopy | None = None
        try:
            self._stream = self._add_video_stream(codec, preset, crf, threads)
            if keyframe_every:
                self._stream.codec_context.gop_size = keyframe_every
            if audio_from:  # moved back by the origin, as the frames are
                start = self._origin * self._time_base
                self._audio = _AudioCopy.attach(audio_from, self._container, start)
            self._container.start_encoding()
        except (OSError, ValueError, av.FFmpegError) as exc:
            try:
                self._abandon()
            except (OSError, av.FFmpegError) as cleanup:
                exc.add_note(f"closing the half-open output also failed: {cleanup}")
            raise open_error("video", path, exc) from exc
        self._lock = threading.Lock()
        # One swscale context for every frame: a new one per frame (`VideoFrame.reformat`)
        # costs about 1 ms of CPU at 720p (BENCHMARKS.md). Its own lock: conversion runs
        # outside `_lock`, so encoding one frame overlaps converting the next.
        self._reformatter = VideoReformatter()
        self._converting = threading.Lock()
        self._held: av.VideoFrame | None = None  # waits for the next frame to know its duration
        self._durations: dict[int, int] = {}  # pts → duration, for packets the encoder emits
        self._last_pts: int | None = None
        self._last_duration: int | None = None
        self._frames = 0
        self._retimed = 0
        self._closed = False

    @property
    def path(self) -> str:
        """The output file."""
        return self._path

    @property
    def rate(self) -> Fraction | None:
        """The nominal frame rate given at construction."""
        return self._rate

    @property
    def frames_written(self) -> int:
        """Frames accepted by `write`; all of them are in the file once `close` returns."""
        return self._frames

    def write(self, image: np.ndarray, pts_raw: int) -> None:
        """Encode one frame shown from `pts_raw` (in `time_base` units) until the next.

        Timestamps must increase; a frame whose `pts_raw` does not is moved one tick after
        the previous frame (and a warning logged once), so no frame is lost.

        Raises:
            ValueError: `image` is not a height×width×3 uint8 array.
            SinkError: the writer is closed, or encoding or writing failed.
        """
        frame = self._to_frame(image)
        with self._lock:
            if self._closed:
                raise SinkError(f"video output {self._path!r} is closed")
            frame.pts = self._next_pts(int(pts_raw) - self._origin)
            try:
                if self._held is not None:
                    self._encode(self._held, duration=frame.pts - self._held.pts)
                if self._audio is not None:
                    self._audio.mux_until(self._container, frame.pts * self._time_base)
            except (OSError, av.FFmpegError) as exc:
                self._failed = True
                raise write_error("video", self._path, exc, mp4=self._mp4) from exc
            self._held = frame
            self._frames += 1

    def close(self) -> None:
        """Flush the encoder, copy the rest of the audio, and finish the file.

        Safe to call more than once, and after `write` raised: the file then holds every
        frame written so far and plays normally.

        Raises:
            SinkError: flushing or finishing the file failed (it is closed all the same).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                try:
                    self._finish()
                finally:
                    self._abandon()
            except (OSError, av.FFmpegError) as exc:
                if self._failed:  # the same cause, reported by the write that failed
                    log.debug("%s: finishing after a failed write also failed: %s",
                              self._path, exc)  # fmt: skip
                    return
                raise write_error("video", self._path, exc, "finish", mp4=self._mp4) from exc

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_video_stream(
        self, codec: str, preset: str, crf: int, threads: int
    ) -> av.video.stream.VideoStream:
        try:
            stream = self._container.add_stream(codec, rate=self._rate)
        except ValueError as exc:  # "'webm' format does not support 'libx264' codec"
            raise ValueError(f"{exc}: write the annotated video ({codec}) to a .mp4, .mkv or "
                             ".mov file") from exc  # fmt: skip
        stream.width = self._width + self._pad[1]
        stream.height = self._height + self._pad[0]
        stream.pix_fmt = "yuv420p"
        # The stream keeps the source time base so timestamps copy over exactly; the encoder
        # counts in the same units, which x264 handles (it derives VFR timing from them).
        stream.time_base = self._time_base
        ctx = stream.codec_context
        ctx.time_base = self._time_base
        ctx.thread_count = threads
        # Tag the colours we convert with (BT.709, TV range) so players don't have to guess;
        # untagged HD is read as BT.709 by some players and BT.601 by others.
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = BT709
        ctx.color_range = TV_RANGE
        if codec in _X26X:
            stream.options = {"preset": preset, "crf": str(crf)}
        return stream

    def _to_frame(self, image: np.ndarray) -> av.VideoFrame:
        expected = (self._height, self._width, 3)
        if image.shape != expected or image.dtype != np.uint8:
            raise ValueError(
                f"`image` must be a {self._height}×{self._width}×3 uint8 array, "
                f"got {image.dtype} {image.shape}"
            )
        if any(self._pad):
            image = cv2.copyMakeBorder(
                image, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE
            )
        with self._converting:
            frame = to_yuv420(image, self._reformatter)
        frame.time_base = self._time_base
        return frame

    def _next_pts(self, pts: int) -> int:
        if self._last_pts is not None and pts <= self._last_pts:
            if not self._retimed:
                # Two frames in one tick of the time base (a live stream's burst within a
                # millisecond) are no news; a timestamp that goes back is.
                level = logging.WARNING if pts < self._last_pts else logging.DEBUG
                log.log(level, "%s: timestamp %d does not increase (previous %d); moved after "
                        "it", self._path, pts, self._last_pts)  # fmt: skip
            self._retimed += 1
            pts = self._last_pts + 1
        if self._last_pts is not None:
            self._last_duration = pts - self._last_pts
        self._last_pts = pts
        return pts

    def _encode(self, frame: av.VideoFrame | None, duration: int = 0) -> None:
        if frame is not None:
            self._durations[frame.pts] = duration
        for packet in self._stream.encode(frame):
            # Encoders leave packet durations unset; the muxer needs them for the last frame
            # and for a correct track duration.
            packet.duration = self._durations.pop(packet.pts, 0)
            self._container.mux(packet)

    def _finish(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._encode(held, duration=self._final_duration())
        if self._frames:
            self._encode(None)
        if self._audio is not None and self._last_pts is not None:
            end = (self._last_pts + self._final_duration()) * self._time_base
            self._audio.mux_until(self._container, end)

    def _final_duration(self) -> int:
        """Duration of the last frame: one nominal frame, else the previous frame's."""
        if self._rate:
            return max(1, round(1 / (self._rate * self._time_base)))
        return self._last_duration or 1

    def _abandon(self) -> None:
        """Close the input audio and the container, whatever state they are in."""
        try:
            if self._audio is not None:
                self._audio.close()
        finally:
            self._container.close()


def _check_args(width: int, height: int, time_base: Fraction, rate: Fraction | None) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"`{name}` must be a positive integer, got {value!r}")
    if not time_base or time_base <= 0:
        raise ConfigError(f"`time_base` must be a positive fraction, got {time_base!r}")
    if rate is not None and rate < 0:
        raise ConfigError(f"`rate` must be >= 0 or None, got {rate!r}")


# `delay_moov`: the header waits for the first fragment, so it can carry the edit list that
# puts the first frame at its own time (x264's B-frames start the decode two frames earlier;
# with the header written first the whole video played 80 ms late against its audio and cues).
# A fragment at each keyframe and at least every second, each written through to the file as
# it is made: FFmpeg's 256-KiB write buffer held a small camera's fragments for a minute.
_FRAGMENTED = {
    "movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof",
    "frag_duration": "1000000",
    "flush_packets": "1",
}


def _fragmentable(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in (".mp4", ".m4v", ".mov")


def _open_container(path: str, fragmented: bool = False) -> av.container.OutputContainer:
    fragments = fragmented and _fragmentable(path)
    try:
        return av.open(path, "w", options=_FRAGMENTED if fragments else None)
    except (OSError, ValueError, av.FFmpegError) as exc:
        raise open_error("video", path, exc) from exc


class _AudioCopy:
    """Copies one input audio stream's packets into the output, in step with the video."""

    def __init__(
        self,
        source: av.container.InputContainer,
        stream: av.audio.stream.AudioStream,
        origin: Fraction = Fraction(0),
    ):
        self._source = source
        self._in = stream
        self._shift = round(origin / stream.time_base)  # the input's origin, in its ticks
        self._out: av.stream.Stream | None = None
        self._packets: Iterator[av.Packet] = _audio_packets(source, stream)
        self._next: av.Packet | None = None
        self._failed = False

    @classmethod
    def attach(
        cls, path: str, container: av.container.OutputContainer, origin: Fraction = Fraction(0)
    ) -> _AudioCopy | None:
        """Add `path`'s audio stream (a player's) to `container`, moved back by `origin`
        seconds as the video is, or log why not and return None."""
        try:
            source = av.open(path)
        except (OSError, ValueError, av.FFmpegError) as exc:
            log.warning("%s: cannot open %r for its audio (%s); writing video only",
                        container.name, path, exc)  # fmt: skip
            return None
        if not source.streams.audio:
            log.info("%s: %r has no audio; writing video only", container.name, path)
            source.close()
            return None
        copy = cls(source, source.streams.best("audio") or source.streams.audio[0], origin)
        reason = _refuses(container.format.name, copy._in)
        if reason is None:
            try:
                copy._out = container.add_stream_from_template(copy._in)
            except (ValueError, av.FFmpegError) as exc:
                reason = str(exc)
        if reason is not None:
            into, codec = container.format.name, copy._in.codec_context.name
            mkv = "" if "matroska" in into else "write to .mkv, or "
            log.warning("%s: cannot copy %s audio into %s (%s); writing video only (to keep "
                        "the sound, %sconvert the input's audio first: `ffmpeg -i INPUT -c:v "
                        "copy -c:a aac INPUT.aac.mp4`)", container.name, codec, into, reason,
                        mkv)  # fmt: skip
            source.close()
            return None
        if container.format.name == "mp4" and copy._in.codec_context.name.startswith("pcm_"):
            log.warning("%s: %s audio goes into MP4 as its new PCM ('ipcm'), which FFmpeg "
                        "before 6.1 and many players misread; .mov or .mkv holds it everywhere",
                        container.name, copy._in.codec_context.name)  # fmt: skip
        return copy

    def mux_until(self, container: av.container.OutputContainer, end: Fraction) -> None:
        """Mux the input's audio packets that start before `end` seconds."""
        while not self._failed:
            packet = self._next if self._next is not None else next(self._packets, None)
            if packet is None:
                return
            if (packet.pts - self._shift) * packet.time_base >= end:
                self._next = packet
                return
            self._next = None
            packet.pts -= self._shift
            if packet.dts is not None:
                packet.dts -= self._shift
            packet.stream = self._out
            try:
                container.mux(packet)
            except (ValueError, av.FFmpegError) as exc:
                # A broken audio packet must not cost the video; drop the rest of the audio.
                log.warning("%s: audio copy stopped at %.3f s (%s); video continues",
                            container.name, float(packet.pts * packet.time_base), exc)  # fmt: skip
                self._failed = True

    def close(self) -> None:
        self._source.close()


def _audio_packets(
    source: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> Iterator[av.Packet]:
    """The stream's packets with a timestamp; stops, with a warning, if demuxing fails."""
    try:
        for packet in source.demux(stream):
            if packet.pts is not None and packet.size:
                yield packet
    except av.FFmpegError as exc:
        log.warning("%s: reading audio stopped (%s); the rest is dropped", source.name, exc)


def _refuses(format_name: str, stream: av.audio.stream.AudioStream) -> str | None:
    """Why a `format_name` container cannot hold a copy of `stream`, or None if it can.

    The real output cannot drop a stream once added, so the header is tried in memory first.
    """
    probe = av.open(io.BytesIO(), "w", format=format_name.split(",")[0])
    try:
        probe.add_stream_from_template(stream)
        probe.start_encoding()
    except (ValueError, av.FFmpegError) as exc:
        return str(exc)
    finally:
        probe.close()
    return None
