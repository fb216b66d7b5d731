"""How a clip is written: pieces of media files, one after another, into one file with
continuous timestamps, by stream copy (`CopyOut`) or by decoding and encoding (`EncodeOut`).

A piece is a span of one file in that file's seconds. Pieces join end to end: the next starts
where the last video frame of the one before ends, so gaps between recordings vanish and the
timestamps never go backwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from streamer.archive._streams import MP4_AUDIO, adts_config, unwrap_adts
from streamer.errors import ConfigError, SinkOpenError, SourceNotFoundError, SourceOpenError

__all__ = ["CopyOut", "EncodeOut", "Piece", "open_media"]

_FASTSTART = {"movflags": "+faststart"}  # the index first: a clip plays while it downloads
_ENCODER = {"preset": "veryfast", "crf": "20"}  # as the `-o` video (`outputs/video.py`)
_SEEK_MARGIN_S = 1.0


@dataclass(frozen=True, slots=True)
class Piece:
    """`start`..`end` seconds of the media file `path` (a copied piece starts at a key frame);
    `key`: a key frame at or before `start` to read from, when one is known."""

    path: Path
    start: float
    end: float
    key: float | None = None


@contextlib.contextmanager
def open_media(path: Path) -> Iterator[av.container.InputContainer]:
    """Open a media file with a video stream for reading.

    Raises:
        SourceNotFoundError: it does not exist.
        SourceOpenError: it is not a readable video.
    """
    if not path.exists():
        raise SourceNotFoundError(f"{path}: no such file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise SourceOpenError(f"{path}: not a readable video ({exc})") from exc
    try:
        if not container.streams.video:
            raise SourceOpenError(f"{path}: it has no video stream")
        yield container
    finally:
        container.close()


def _open_output(out: Path) -> av.container.OutputContainer:
    suffix = out.suffix.lower()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        options = _FASTSTART if suffix in (".mp4", ".m4v", ".mov") else {}
        return av.open(str(out), "w", container_options=options)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise SinkOpenError(f"clip {out}: cannot be written ({exc})") from exc


def _copy_audio(
    output: av.container.OutputContainer, container: av.container.InputContainer
) -> tuple[Any | None, bool]:
    """The output's copy of the input's first audio stream (None when it has none or the
    output cannot hold it), and whether it is AAC in ADTS frames, to unwrap (`_streams`)."""
    audio = container.streams.audio[0] if container.streams.audio else None
    ctx = audio.codec_context if audio is not None else None
    if audio is None or ctx is None or ctx.name not in MP4_AUDIO:
        return None, False
    adts = ctx.name == "aac" and not ctx.extradata
    config = _first_adts_config(container, audio) if adts else None
    if adts and config is None:
        return None, False
    try:
        copy = output.add_stream_from_template(audio, opaque=True)
    except (ValueError, av.FFmpegError):
        return None, False
    if config is not None:
        copy.codec_context.extradata = config
    return copy, adts


def _first_adts_config(container: av.container.InputContainer, audio: Any) -> bytes | None:
    """The AAC configuration in the header of the stream's first ADTS frame."""
    try:
        for packet in container.demux(audio):
            if packet.size:
                return adts_config(bytes(packet)[:7])
    except av.error.FFmpegError:
        pass
    return None


class _Out:
    """What both writers share: the output, its audio copy, where the clip stands, and the
    reading of one piece (`add`)."""

    def __init__(self, out: Path, container: av.container.InputContainer) -> None:
        self.path = out
        self.output = _open_output(out)
        self.audio, self.adts = _copy_audio(self.output, container)
        self.base = 0.0  # where the next piece starts, in the clip's seconds
        self.first: float | None = None  # where the clip starts, in the first piece's seconds
        self.end = 0.0  # where the video written so far ends, in the clip's seconds
        self.frames = 0
        self.began: float | None = None  # where this piece's video began, in its seconds
        self.shift = 0.0  # this piece's seconds minus the clip's
        self.last_audio: int | None = None  # dts, in the audio's own ticks

    def add(self, piece: Piece) -> None:
        """Append `piece`: its video from `piece.start` (the key frame, when copying) until
        `piece.end`, and its audio from where its video began."""
        with open_media(piece.path) as container:
            video = container.streams.video[0]
            audio = container.streams.audio[0] if self.audio and container.streams.audio else None
            tb = Fraction(video.time_base)
            # A little before the key frame: where a seek lands in a file without an index
            # (MPEG-TS) is only roughly where it was asked to.
            key = piece.start if piece.key is None else piece.key
            _seek(container, video, round((key - _SEEK_MARGIN_S) / tb))
            self.began = None
            video_done = False
            for packet in _packets(container, video, audio):
                if packet.stream_index == video.index:
                    if not video_done:
                        video_done = not self.video_packet(packet, piece)
                    # Audio is interleaved a little behind: read on briefly for its end.
                    if video_done and (audio is None or _dts(packet) * tb > piece.end + 1):
                        break
                elif self.began is not None and not self._audio(packet, piece) and video_done:
                    break
            if not video_done:
                self.flush_piece(video, piece)
        self.base = self.end

    def video_packet(self, packet: av.Packet, piece: Piece) -> bool:
        """Write a video packet of the piece; False once past its end."""
        raise NotImplementedError

    def flush_piece(self, video: Any, piece: Piece) -> None:
        """The piece's file ended before the span did."""

    def _start(self, when: float) -> None:
        """The piece's video begins at `when` (its seconds): there the clip goes on."""
        self.began = when
        self.shift = when - self.base  # the piece's seconds minus the clip's
        if self.first is None:
            self.first = when

    def _audio(self, packet: av.Packet, piece: Piece) -> bool:
        """Copy an audio packet that falls in the piece's span; False once past its end."""
        if self.audio is None or packet.pts is None:
            return True
        if self.adts:
            unwrapped = unwrap_adts(packet)
            if unwrapped is None:
                return True
            packet = unwrapped
        when = float(packet.pts * packet.time_base)
        if when >= piece.end:
            return False
        assert self.began is not None
        if when < self.began:
            return True
        ticks = packet.pts - round(self.shift / packet.time_base)
        if self.last_audio is not None and ticks <= self.last_audio:
            return True  # overlaps the piece before: dropped rather than out of order
        self.last_audio = ticks
        packet.pts = packet.dts = ticks
        packet.stream = self.audio
        self.output.mux(packet)
        return True

    def finish(self) -> tuple[float, float]:
        """Close the clip; (start, end) in the first piece's seconds.

        Raises:
            ConfigError: no video frame fell in the span (the file is removed).
        """
        if not self.frames or self.first is None:
            self.abandon()
            raise ConfigError(f"clip {self.path}: no video frame in the span")
        self.output.close()
        return self.first, self.first + self.end

    def abandon(self) -> None:
        with contextlib.suppress(av.FFmpegError, OSError, ValueError):
            self.output.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class CopyOut(_Out):
    """Copies packets: each piece from its key frame (`Piece.start`) to its end."""

    def __init__(self, out: Path, container: av.container.InputContainer) -> None:
        super().__init__(out, container)
        video = container.streams.video[0]
        try:
            self.video = self.output.add_stream_from_template(video, opaque=True)
        except (ValueError, av.FFmpegError) as exc:
            self.abandon()
            raise SinkOpenError(
                f"clip {out}: cannot hold {video.codec_context.name} ({exc})"
            ) from exc
        self.last_video: int | None = None

    def add(self, piece: Piece) -> None:
        self.last_video = None  # timestamps are compared within a piece's time base
        super().add(piece)

    def video_packet(self, packet: av.Packet, piece: Piece) -> bool:
        tb = Fraction(packet.time_base)
        if self.began is None:
            # From the key frame at the piece's start (a seek may land a little before it).
            if (
                not packet.is_keyframe
                or packet.pts is None
                or packet.pts < round(piece.start / tb) - 1
            ):
                return True
            self._start(float(packet.pts * tb))
        if _dts(packet) * tb >= piece.end:
            return False
        moved = round(self.shift / tb)
        dts = _dts(packet) - moved
        if self.last_video is not None and dts <= self.last_video:
            dts = self.last_video + 1
        pts = max(dts, (packet.pts if packet.pts is not None else dts + moved) - moved)
        self.last_video = dts
        packet.dts, packet.pts = dts, pts
        self.end = max(self.end, float((pts + (packet.duration or 0)) * tb))
        packet.stream = self.video
        self.output.mux(packet)
        self.frames += 1
        return True


class EncodeOut(_Out):
    """Decodes each piece and encodes its frames from `Piece.start` to its end (H.264)."""

    def __init__(self, out: Path, container: av.container.InputContainer) -> None:
        super().__init__(out, container)
        video = container.streams.video[0]
        ctx = video.codec_context
        rate = video.average_rate or video.guessed_rate or Fraction(25)
        self.time_base = Fraction(1, 90_000)
        self.step = max(1, round(1 / (Fraction(rate) * self.time_base)))
        try:
            stream = self.output.add_stream("libx264", rate=rate)
            stream.width, stream.height = ctx.width - ctx.width % 2, ctx.height - ctx.height % 2
            stream.pix_fmt = "yuv420p"
            stream.time_base = stream.codec_context.time_base = self.time_base
            stream.options = dict(_ENCODER)
        except (ValueError, av.FFmpegError) as exc:
            self.abandon()
            raise SinkOpenError(f"clip {out}: cannot encode H.264 ({exc})") from exc
        self.video = stream
        self.last_pts: int | None = None

    def video_packet(self, packet: av.Packet, piece: Piece) -> bool:
        return self._frames(_decode(packet), piece)

    def flush_piece(self, video: Any, piece: Piece) -> None:
        """The decoder holds the file's last frames back until it is drained."""
        try:
            rest = video.decode(None)
        except av.FFmpegError:
            return
        self._frames(rest, piece)

    def _frames(self, frames: list[av.VideoFrame], piece: Piece) -> bool:
        for frame in frames:
            when = frame.time
            if when is None or when < piece.start:
                continue
            if when >= piece.end:
                return False
            if self.began is None:
                self._start(when)
            self._encode(frame, when - self.shift)
        return True

    def _encode(self, frame: av.VideoFrame | None, at: float = 0.0) -> None:
        if frame is not None:
            stream = self.video
            frame = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
            pts = round(at / self.time_base)
            if self.last_pts is not None and pts <= self.last_pts:
                pts = self.last_pts + 1
            self.last_pts = frame.pts = pts
            frame.time_base = self.time_base
            self.end = max(self.end, float((pts + self.step) * self.time_base))
            self.frames += 1
        for packet in self.video.encode(frame):
            packet.duration = self.step
            self.output.mux(packet)

    def finish(self) -> tuple[float, float]:
        if self.frames:
            self._encode(None)  # drain the encoder
        return super().finish()


def _seek(container: av.container.InputContainer, video: Any, ticks: int) -> None:
    """To the key frame at or before `ticks`; from the start when the file cannot seek."""
    try:
        container.seek(max(0, ticks), stream=video, backward=True)
    except av.error.FFmpegError:
        container.seek(0, stream=video, backward=True)


def _packets(
    container: av.container.InputContainer, video: Any, audio: Any | None
) -> Iterator[av.Packet]:
    """The packets with data; a torn end (a recording cut short) ends the file quietly, and
    a packet it cut in the middle (flagged corrupt) is left out."""
    streams = (video,) if audio is None else (video, audio)
    try:
        for packet in container.demux(*streams):
            if packet.is_corrupt:
                return
            if packet.size and (packet.pts is not None or packet.dts is not None):
                yield packet
    except av.error.FFmpegError:
        return


def _decode(packet: av.Packet) -> list[av.VideoFrame]:
    try:
        return packet.decode()
    except av.error.InvalidDataError:
        return []


def _dts(packet: av.Packet) -> int:
    return packet.dts if packet.dts is not None else packet.pts
