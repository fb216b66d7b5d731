"""Network streams through PyAV: RTSP(S) cameras, HTTP(S) MJPEG, HLS playlists, remote files.

FFmpeg options, and why:

- `rtsp_transport=tcp` (default): RTP interleaved in the RTSP connection. No packet loss, no UDP
  ports to open through NAT or a firewall; `udp` is there for cameras that only do UDP.
- `timeout` (RTSP, microseconds): FFmpeg's own socket I/O timeout. FFmpeg 8 reads `timeout`
  (the older `stimeout` is ignored without a word). Set a second past PyAV's timeouts, as a
  backstop: PyAV's `timeout=(open, read)` interrupt fires first, for every protocol (HLS
  segment fetches too), and separates a slow open from a stall.
- `analyzeduration`: how much of the stream FFmpeg reads at open to learn its parameters. RTSP
  describes its streams in the SDP, so half a second (not FFmpeg's 5) keeps opens and reconnects
  quick. `fflags=nobuffer` is deliberately not set: it throws away the packets read while
  probing, among them the first key frame, so nothing decodes until the next one (a clip with
  a single key frame then never decodes at all).
- Decoding: `thread_type="AUTO"` with the codec flag `low_delay` on live streams. `low_delay`
  makes FFmpeg pick slice threads instead of frame threads: frame threads hold back one frame
  per thread (about 80 ms at 25 fps on 3 threads here, more than half a second on a 16-core
  machine), slice threads hold back nothing. Conversion to RGB follows the run's
  `DecodePlan`, as for files (`streamer.sources._pyav`); `--hwaccel cuda` decodes on the GPU.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import av
import av.error
import numpy as np

from streamer.core.channel import Channel
from streamer.core.frame import Frame, Picture
from streamer.core.redact import install_libav_redaction, redact
from streamer.core.retry import Backoff
from streamer.errors import (
    SourceAuthError,
    SourceError,
    SourceNotFoundError,
    SourceOpenError,
    SourceTimeout,
    SourceUnavailableError,
)
from streamer.sources._live import LiveSource
from streamer.sources._pyav import (
    FrameConverter,
    configure_decoder,
    describe,
    discard_others,
    main_stream,
)
from streamer.sources._timeline import Pacer
from streamer.sources.hwaccel import hwaccel_for
from streamer.sources.info import VideoInfo
from streamer.sources.names import url_stream_name
from streamer.sources.options import DecodePlan, SourceOptions
from streamer.sources.pool.wire import NetworkSpec
from streamer.sources.remote_file import (
    file_policy,
    is_remote_file,
    live_by_default,
    no_ranges_hint,
)
from streamer.sources.tap import PacketSink, PacketTap, TapConnection

__all__ = ["NETWORK_SCHEMES", "NetworkSource"]

log = logging.getLogger("streamer.sources")

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
# A finite stream that stops this far short of its announced duration was cut off.
_EARLY_END_S = 1.0
# A packet that comes this share of --read-timeout after it was asked for means a stall (PyAV's
# interrupt fires at the whole timeout; the margin is the clock's and the scheduler's).
_GAP_SHARE = 0.95
# The longest a paced reader waits for a frame's time to come.
_MAX_PACE_S = 1.0


class NetworkSource(LiveSource):
    """A network stream read with PyAV, reconnecting with backoff.

    Args:
        url: `rtsp://`, `rtsps://`, `http://` or `https://` URL; may carry credentials, which
            never appear in names, logs, errors or `status`.
        name: stream name; defaults to host, port and path (`127.0.0.1_8554_cam1`).
        live: the live contract; by default True except for URLs of video files and
            finished HLS playlists (the playlist is fetched here to tell: blocking, at most
            `options.open_timeout` per request).
        options: timeouts, transport and backoff.

    A decode worker process can read the stream instead of a thread of this process
    (`worker_spec`, `streamer.sources.pool`); `status`, `info` and `error` then follow the
    worker's copy.

    Its packets can be recorded as they arrive (`tappable`: `run(..., tap=)`, see
    `streamer.sources.tap`): each connection is offered to the tap's sink, and the video
    packets (and the first audio stream's) of a connection it takes reach it after decoding;
    one it declines (MJPEG) reaches a sink that encodes as decoded frames.

    Example:
        >>> source = NetworkSource("rtsp://user:pw@10.0.0.7/stream1")
        >>> source.name, source.spec
        ('10.0.0.7_stream1', 'rtsp://***@10.0.0.7/stream1')
    """

    tappable = True

    def __init__(
        self,
        url: str,
        name: str | None = None,
        *,
        live: bool | None = None,
        options: SourceOptions = SourceOptions(),  # noqa: B008 (frozen, so sharing is safe)
    ) -> None:
        _check_url(url)
        super().__init__(
            url,
            name or url_stream_name(url),
            options,
            live=live_by_default(url, options.open_timeout) if live is None else live,
        )
        if not self.live and is_remote_file(url):  # a file: its server will not mend
            self._backoff = Backoff(file_policy(options.reconnect))
        self._url = url  # with credentials: for FFmpeg only, never printed
        self._converter: FrameConverter | None = None
        install_libav_redaction()

    def worker_spec(self) -> NetworkSpec:
        """A decode worker opens the same URL (credentials included: it goes over a private
        socket) with the same options."""
        return NetworkSpec(self._url, self.name, live=self.live, options=self.options)

    async def run(
        self,
        out: Channel[Frame],
        stop: asyncio.Event,
        plan: DecodePlan = DecodePlan(),  # noqa: B008 (frozen, so sharing is safe)
        tap: PacketTap | None = None,
    ) -> None:
        """As `LiveSource.run`; every connection converts frames as `plan` asks, and is
        offered to `tap`'s sink, which is closed (its files finished) before this returns."""
        # One converter for every connection: its sampler keeps the analysis grid across them.
        self._converter = FrameConverter(plan, self.name)
        await super().run(out, stop, plan, tap)

    def _open_reader(self, resume_after: int | None) -> _NetworkReader:
        return _NetworkReader(
            self._url, self.spec, self.options, self.live, resume_after, self._converter,
            self._sink,
        )  # fmt: skip

    def container_options(self) -> dict[str, str]:
        """The FFmpeg demuxer/protocol options this source opens its URL with."""
        return _container_options(self._url, self.options)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        raise SourceOpenError(
            f"{redact(url)!r}: the port is not a number from 0 to 65535"
        ) from None
    if parts.scheme.lower() not in NETWORK_SCHEMES or not parts.hostname:
        raise SourceOpenError(
            f"{redact(url)!r} is not a network URL this source reads "
            f"(expected {', '.join(s + '://HOST/…' for s in NETWORK_SCHEMES)})"
        )


def _container_options(url: str, options: SourceOptions) -> dict[str, str]:
    opts = {"analyzeduration": _micros(options.analyze_duration)}
    if urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
        opts["rtsp_transport"] = options.rtsp_transport
        opts["timeout"] = _micros(max(options.open_timeout, options.read_timeout) + 1.0)
    return opts


def _micros(seconds: float) -> str:
    return str(round(seconds * 1_000_000))


class _NetworkReader:
    """One open connection to a network stream (used from its decode thread only).

    `damaged` counts, for this connection, packets that failed to decode and pictures FFmpeg
    flagged as decoded with errors (`is_corrupt`); the source adds it to `status.damaged`.
    Counting only: every picture the decoder outputs is still delivered (a picture with a
    slice missing is better than a gap for a live view), and the decoder's options are not
    touched for it (`flags2=+showall`, `output_corrupt` and `err_detect` changed nothing
    measurable at 5 % datagram loss). Measured there (640x360, 8 s): no packet failed, and
    FFmpeg flagged 10-14 of ~215 pictures, about one in five of those its decoder logged
    errors for: with slice threads (`low_delay`) FFmpeg runs no error concealment, which is
    what flags most of them (single-threaded, ~67 were flagged). A lower bound, then.
    """

    def __init__(
        self,
        url: str,
        spec: str,
        options: SourceOptions,
        live: bool,
        resume_after: int | None,
        converter: FrameConverter | None = None,
        sink: PacketSink | None = None,
    ) -> None:
        self.spec = spec
        self.options = options
        self.live = live
        self.converter = converter or FrameConverter(DecodePlan(), spec)
        self.damaged = 0
        self._pacer = Pacer(most=_MAX_PACE_S)
        started = time.monotonic()
        try:
            self.container = av.open(
                url,
                container_options=_container_options(url, options),
                timeout=(options.open_timeout, options.read_timeout),
                metadata_errors="ignore",
                hwaccel=hwaccel_for(self.converter.plan.hwaccel),
            )
        except (av.error.FFmpegError, OSError, EOFError) as exc:
            # FFmpeg's RTSP demuxer reports PyAV's timeout as "invalid data": tell by the clock.
            timed_out = time.monotonic() - started >= options.open_timeout * 0.95
            # `from None`: PyAV's exception holds the URL with its credentials.
            raise _translate(exc, spec, options, opening=True, timed_out=timed_out) from None
        self.audio: av.AudioStream | None = None
        self.tap: PacketSink | None = None  # `sink`, when it takes this connection
        try:
            self.stream, self.info = self._prepare(live, resume_after)
            self._offer(sink)
            discard_others(self.container, self.stream, self.audio)
        except BaseException:
            self.container.close()
            raise
        # A stream that announces its length (a clip, a file, a finished playlist) ends at
        # end of input; one that does not (a camera) has dropped when its input ends.
        self.finite = self.container.duration is not None
        # HLS hands a segment's frames over at once, then none until the next segment: seconds
        # apart (6 s is Apple's advice), longer than --read-timeout.
        self.segmented = self.container.format.name == "hls"

    def _prepare(self, live: bool, resume_after: int | None) -> tuple[av.VideoStream, VideoInfo]:
        stream = main_stream(self.container, "video")
        if stream is not None and stream.codec_context is None:
            raise SourceOpenError(
                f"{self.spec}: the video codec cannot be decoded by this FFmpeg build. "
                "Fix: have the camera send H.264, H.265 or MJPEG."
            )
        info = describe(self.spec, self.container, live=live)  # raises without a video stream
        configure_decoder(stream, self.converter.plan, live=live, name=self.spec)
        if resume_after is not None:
            self._seek(stream, resume_after)
        return stream, info

    def _offer(self, sink: PacketSink | None) -> None:
        """Offer this connection to the run's packet sink; when it takes it, its packets
        (video, and the first audio stream's) go there too."""
        if sink is None:
            return
        audio = main_stream(self.container, "audio")
        if sink.start(TapConnection(self.stream, audio, self.info, time.time())):
            self.tap, self.audio = sink, audio

    def _seek(self, stream: av.VideoStream, raw: int) -> None:
        """Seek to the key frame before `raw`; frames up to it are skipped by the caller."""
        try:
            self.container.seek(raw, stream=stream, backward=True)
        except av.error.FFmpegError as exc:  # not seekable: decode from the start and skip
            log.info("%s: cannot seek to resume (%s); skipping ahead", self.spec, exc.strerror)

    def frames(self) -> Iterator[tuple[np.ndarray | Picture, int | None]]:
        """Decoded frames with their raw pts; returns at the end of input.

        A frame is an RGB array, or a `Picture` when the run's plan converts only some frames
        (`Frame` takes either).
        """
        last_frame = asked = time.monotonic()
        last_raw: int | None = None
        tap, video = self.tap, self.stream.index
        streams = (self.stream,) if self.audio is None else (self.stream, self.audio)
        try:
            for packet in self.container.demux(*streams):
                self._check_gap(time.monotonic() - asked)
                if packet.stream_index != video:  # audio, demuxed for the tap only
                    if tap is not None and packet.size:
                        tap.packet(packet)
                    asked = time.monotonic()
                    continue
                frames = self._decode(packet)
                # After decoding (the decoder has its own reference to the data), before the
                # frames are handed on: the tap sees the packet as soon as it is safe to.
                if tap is not None and packet.size:
                    tap.packet(packet)
                for frame in frames:
                    self._pace(frame)
                    last_frame = time.monotonic()
                    last_raw = frame.pts if frame.pts is not None else last_raw
                    yield self.converter.picture(frame, self._timeline(frame)), frame.pts
                # Packets without pictures (garbage, or waiting for a key frame) are a stall too.
                if time.monotonic() - last_frame > self.options.read_timeout:
                    raise SourceTimeout(
                        f"{self.spec}: no picture decoded for {self.options.read_timeout:g} s"
                    )
                asked = time.monotonic()  # not counting the time the frames took to hand on
        except (av.error.FFmpegError, OSError) as exc:
            raise _translate(exc, self.spec, self.options, opening=False) from None
        self._check_whole(last_raw)

    def _pace(self, frame: av.VideoFrame) -> None:
        """Under the live contract, an input with an end (`--live` on a finished playlist or a
        remote file) and a live HLS playlist play at their own frame rate, as a live file
        does, not at the server's speed: analysis sampled on the clock saw a few frames of
        each burst, and a live playlist's next segment came seconds after the burst, a stall.
        A jump in the timestamps is not waited out."""
        if self.live and (self.finite or self.segmented) and frame.time is not None:
            self._pacer.wait(frame.time)

    def _check_gap(self, waited: float) -> None:
        """A packet that took `--read-timeout` to come ends the connection as a stall. At
        PyAV's timeout FFmpeg's RTSP demuxer hands over one more packet it held, and only the
        next timeout raises: without this, a stall counted after twice the timeout."""
        if waited >= self.options.read_timeout * _GAP_SHARE:
            raise SourceTimeout(f"{self.spec}: no data for {self.options.read_timeout:g} s "
                                "(stalled)")  # fmt: skip

    def _timeline(self, frame: av.VideoFrame) -> float | None:
        """The frame's time as the pipeline's sampler will see it: the clock for live streams
        (near the capture time the frame is stamped with), media time otherwise."""
        if self.live:
            return time.monotonic()
        return frame.time

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            # A damaged packet (UDP loss, a glitch): the next key frame repairs the picture.
            self.damaged += 1
            log.debug("%s: a packet did not decode (%s)", self.spec, redact(str(exc)))
            return []
        for frame in frames:
            # Slices missing (lost datagrams): FFmpeg shows the picture and flags it.
            if frame.is_corrupt:
                self.damaged += 1
        return frames

    def _check_whole(self, last_raw: int | None) -> None:
        """A finite stream that ends well before its announced duration was cut off."""
        duration = self.container.duration
        if not self.finite or duration is None:
            return
        expected = duration / av.time_base + self.info.start
        reached = float(last_raw * self.info.time_base) if last_raw is not None else 0.0
        if reached < expected - _EARLY_END_S:
            self.finite = False  # so the source reconnects instead of ending
            raise SourceUnavailableError(
                f"{self.spec}: the stream stopped at {reached:.1f} s of {expected:.1f} s"
            )

    def close(self) -> None:
        try:
            if self.tap is not None:
                self.tap.stop()
        finally:
            self.container.close()


def _translate(
    exc: BaseException,
    spec: str,
    options: SourceOptions,
    *,
    opening: bool,
    timed_out: bool = False,
) -> SourceError:
    """A PyAV error as a redacted `SourceError`: permanent ones name the fix, retryable ones
    (`SourceUnavailableError`, `SourceTimeout`) say what happened."""
    what = redact(str(getattr(exc, "strerror", None) or exc))
    if isinstance(exc, av.error.HTTPNotFoundError):
        where = "the RTSP mount or stream name in the camera's manual" if "rtsp" in spec[:5] else (
            "the file's or playlist's address, as a browser opens it")  # fmt: skip
        return SourceNotFoundError(f"{spec}: the server has no stream there ({what}). Fix: check "
                                   f"the path in the URL ({where}).")  # fmt: skip
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return SourceAuthError(
            f"{spec}: the server refused access ({what}). Fix: put the right user and "
            "password in the URL (rtsp://USER:PASSWORD@HOST/…), or give that user access."
        )
    if isinstance(exc, av.error.HTTPClientError) and not isinstance(
        exc, av.error.HTTPTooManyRequestsError
    ):
        return SourceOpenError(f"{spec}: the server refused the request ({what}).")
    if isinstance(exc, av.error.ProtocolNotFoundError | av.error.DecoderNotFoundError):
        return SourceOpenError(f"{spec}: this FFmpeg build cannot read it ({what}).")
    return _retryable(exc, spec, options, what, opening=opening, timed_out=timed_out)


def _retryable(
    exc: BaseException,
    spec: str,
    options: SourceOptions,
    what: str,
    *,
    opening: bool,
    timed_out: bool,
) -> SourceError:
    # ExitError: PyAV's timeout interrupted FFmpeg.
    if timed_out or isinstance(exc, av.error.ExitError | TimeoutError):
        if opening:
            return SourceTimeout(f"{spec}: no answer within {options.open_timeout:g} s")
        return SourceTimeout(f"{spec}: no data for {options.read_timeout:g} s (stalled)")
    if isinstance(exc, ConnectionRefusedError):
        return SourceUnavailableError(f"{spec}: connection refused (nothing listening there)")
    if isinstance(exc, av.error.InvalidDataError):
        return SourceUnavailableError(f"{spec}: the server sent no readable video ({what})")
    if not opening:
        return SourceUnavailableError(
            f"{spec}: the connection broke ({what}){no_ranges_hint(spec)}"
        )
    unresolved = _unresolved(spec)
    if unresolved is not None:  # FFmpeg says only "Input/output error"
        return SourceUnavailableError(unresolved)
    return SourceUnavailableError(f"{spec}: {what}")


def _unresolved(spec: str) -> str | None:
    """What to say when the URL's host name does not resolve (a typo, or no DNS here), else
    None. Blocking: called on the decode thread, after an open failed."""
    host = urlsplit(spec).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        return (f"{spec}: the host name {host!r} does not resolve ({exc.strerror}). Fix: check "
                "the camera's address in the URL, or this machine's DNS")  # fmt: skip
    except (OSError, UnicodeError):
        return None
    return None
