"""What a recording or a clip copies of a connection's streams: which codecs MP4 takes, the
codec parameters (copied off the input, which closes on its own), and AAC's ADTS framing
undone.

AAC from MPEG-TS (HLS, HTTP or UDP transport streams) comes in ADTS frames: each packet starts
with a 7- or 9-byte header, and the stream has no codec configuration of its own. MP4 wants raw
AAC packets and the configuration (two bytes, the AudioSpecificConfig) in its header, written
before the first packet. So the configuration is read from the first frame's header and the
headers are cut off. (FFmpeg's muxer would insert its `aac_adtstoasc` filter by itself, but
only after the header is written: too late for a fragmented file whose header comes first.)
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import av

from streamer.sources.tap import TapConnection

__all__ = ["MP4_AUDIO", "MP4_VIDEO", "Connection", "adts_config", "copy_parameters", "unwrap_adts"]

log = logging.getLogger("streamer.archive")

#: Codecs copied into MP4 (what browsers and players take there). Others are declined: an MJPEG
#: camera is recorded by encoding its frames instead.
MP4_VIDEO = frozenset({"h264", "hevc", "av1", "vp9"})
#: Audio codecs copied along; other audio (G.711 from many cameras) is left out.
MP4_AUDIO = frozenset({"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"})


@dataclass(slots=True)
class Connection:
    """A connection's stream parameters, in streams a recorder owns.

    Attributes:
        adts: its audio is AAC in ADTS frames (no configuration of its own): `asc` is read
            from the first frame, and each packet is unwrapped (`unwrap_adts`).
        asc: the AAC configuration, once known.
        keys: video key frames seen so far.
        wall0: wall time of media time 0 on this connection (the best estimate so far).
    """

    holder: Any  # the in-memory output container that owns the copies
    video: Any
    audio: Any | None
    video_index: int
    audio_index: int | None
    codec: str
    width: int
    height: int
    opened: float
    adts: bool = False
    asc: bytes | None = None
    keys: int = 0
    wall0: float | None = None


def copy_parameters(connection: TapConnection, audio: bool) -> Connection:
    """Copy the connection's codec parameters into streams that outlive its input.

    Raises:
        ValueError, av.FFmpegError: MP4 cannot hold the video's parameters.
    """
    holder = av.open(io.BytesIO(), "w", format="mp4")
    video = holder.add_stream_from_template(connection.video, opaque=True)
    copied = None
    source = connection.audio
    ctx = source.codec_context if source is not None else None
    codec = ctx.name if ctx is not None else None
    if audio and source is not None and codec in MP4_AUDIO:
        try:
            copied = holder.add_stream_from_template(source, opaque=True)
        except (ValueError, av.FFmpegError) as exc:
            log.info("audio %s not recorded (%s)", codec, exc)
    info = connection.info
    return Connection(
        holder, video, copied, connection.video.index,
        source.index if copied is not None and source is not None else None,
        info.codec, info.width, info.height, connection.opened,
        adts=copied is not None and codec == "aac" and not (ctx and ctx.extradata),
    )  # fmt: skip


def adts_config(data: bytes) -> bytes | None:
    """The AudioSpecificConfig an ADTS frame's header describes; None when `data` is not an
    ADTS frame or describes its channels in the stream (channel configuration 0)."""
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF0 != 0xF0:
        return None
    profile, rate = data[2] >> 6, (data[2] >> 2) & 0x0F
    channels = ((data[2] & 0x01) << 2) | (data[3] >> 6)
    if not channels or rate > 12:
        return None
    return (((profile + 1) << 11) | (rate << 7) | (channels << 3)).to_bytes(2, "big")


def unwrap_adts(packet: av.Packet) -> av.Packet | None:
    """The raw AAC of an ADTS frame, with the packet's timestamps (a small copy: audio
    packets are a few hundred bytes); the packet itself when it has no ADTS header; None for
    a frame of several raw blocks, which MP4 cannot take as one packet."""
    data = bytes(packet)
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF0 != 0xF0:
        return packet
    if data[6] & 0x03:
        return None
    header = 7 if data[1] & 0x01 else 9  # protection_absent: no CRC
    raw = av.Packet(data[header:])
    raw.pts, raw.dts, raw.duration = packet.pts, packet.dts, packet.duration
    raw.time_base = packet.time_base
    return raw
