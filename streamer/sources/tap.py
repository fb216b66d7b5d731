"""The packet tap: a live network source hands its demuxed, still compressed packets to a
recorder, which copies them into files without decoding or encoding anything; what cannot be
copied, a live source hands over as decoded frames for the recorder to encode.

::

    source.run(out, stop, plan, tap=recorder)      where the source runs (this process, or
      sink = tap.sink()                             a decode worker: the tap travels there)
      per connection, on the decode thread:
        sink.start(TapConnection) → True/False      the sink takes or declines the connection
        sink.packet(packet) ...                     video (and audio) packets, after decoding
        sink.stop()                                 the connection is over
      per connection declined, or every connection of a camera (a `FrameSink` only):
        sink.start_frames(VideoInfo) → True/False   the sink takes its frames to encode them
        sink.frame(frame) ...                       each decoded frame, as it is stamped
        sink.stop()                                 the connection is over
      sink.close()                                  the run is over (waits for the writer)

The tap is the run's per-stream object (`PacketTap`); its sink does the work where the source
runs. A tap must be picklable: when the source runs in a decode worker
(`streamer.sources.pool`), the tap travels in the `Open` message, the worker makes the sink
and writes, and the worker's copy of `tap.state` comes back in `Recorded` messages, which the
pipeline's tap takes with `follow` (as a source follows its copy with `SourceBase.follow`).
So one process writes each stream's files: the one that decodes it.

Which sources have packets: `Source.tappable`. Network sources (RTSP, HTTP, HLS through PyAV)
do; cameras (OpenCV gives decoded pictures) do not, and take a tap only when its sink is a
`FrameSink`, to record their frames; local files (never copied: an archive refers to the file
itself) refuse a tap. A network connection whose codec cannot be copied into the sink's
container (an MJPEG camera over HTTP) is declined by the sink at `start`; the tap's `state`
says "declined", and why, and a sink that is also a `FrameSink` is then offered the
connection's frames to encode (`start_frames`).

Cost on the decode thread: `packet` is called once per packet with the `av.Packet` the demuxer
made, `frame` once per frame with the `Frame` the pipeline gets too (no copy: the sink keeps a
reference and muxes or encodes later on its own thread). They must not block: a sink that
cannot keep up drops packets or frames and says so in its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from streamer.sources.info import VideoInfo

if TYPE_CHECKING:  # PyAV's types only: this module loads without touching FFmpeg
    import av

    from streamer.core.frame import Frame

__all__ = ["TAP_STATES", "FrameSink", "PacketSink", "PacketTap", "TapConnection", "TapState"]

#: What a tap can be doing (`TapState.state`).
TAP_STATES = ("idle", "waiting", "recording", "declined", "failed", "closed")


@dataclass(frozen=True, slots=True)
class TapConnection:
    """One connection of a source, as the sink is offered it.

    Attributes:
        video: the video stream the packets come from: a template for the copy (its codec
            parameters and time base). Valid only until `PacketSink.stop`: the source closes
            the connection then, so a sink copies what it needs during `start`.
        audio: the first audio stream, when the connection has one; None otherwise.
        info: what the source says about the video (codec, size, rate).
        opened: `time.time()` when the connection opened.
    """

    video: av.VideoStream
    audio: av.AudioStream | None
    info: VideoInfo
    opened: float


@dataclass(frozen=True, slots=True)
class TapState:
    """What a tap is doing, small and picklable (it travels from a decode worker).

    Attributes:
        state: one of `TAP_STATES`: "idle" (not started), "waiting" (for a key frame to start
            a file at), "recording", "declined" (this connection cannot be copied: `detail`
            says why), "failed" (writing stopped: `detail` says why, e.g. the disk is full;
            the stream goes on), "closed" (the run is over).
        detail: why it declined or failed, or a warning (packets dropped); None when all is
            well.
        files: files started so far.
        bytes: bytes written so far.
        current: the file being written (a path as the sink names it), or None.
        dropped: packets (or frames) dropped because the writer fell behind or failed.
        mode: how the stream is recorded: "copy" (its packets), "encode" (its decoded
            frames, encoded), None before either.
    """

    state: str = "idle"
    detail: str | None = None
    files: int = 0
    bytes: int = 0
    current: str | None = None
    dropped: int = 0
    mode: str | None = None


class PacketSink(Protocol):
    """Takes one stream's packets where the source runs. `start`, `packet` and `stop` are
    called on the source's decode thread and must return quickly; `close` may wait."""

    def start(self, connection: TapConnection) -> bool:
        """A connection opened: True to receive its packets, False to decline it (its codec
        cannot be copied). Never raises: a failure goes into the tap's state."""
        ...

    def packet(self, packet: av.Packet) -> None:
        """A packet of the connection's video or audio stream (`packet.stream_index` says
        which), already decoded by the source when it is video. The sink may keep it."""
        ...

    def stop(self) -> None:
        """The connection is over (ended, dropped or stopped)."""
        ...

    def close(self) -> None:
        """The run is over: finish writing. Blocks until the files are complete; later calls
        of the other methods are ignored."""
        ...


@runtime_checkable
class FrameSink(Protocol):
    """A sink that also records decoded frames, by encoding them: a connection whose packets
    it declined, and every connection of a source without packets (a camera). `start_frames`
    and `frame` are called on the source's decode thread and must return quickly; `stop`
    ends the connection as for packets."""

    def start_frames(self, info: VideoInfo) -> bool:
        """A connection to record by its frames: True to receive them. Never raises."""
        ...

    def frame(self, frame: Frame) -> None:
        """A decoded frame of that connection, as the pipeline gets it (its pixels may be
        made on first use, on the sink's thread). The sink may keep it; frames are immutable."""
        ...


class PacketTap(Protocol):
    """The per-stream recorder a run hands to a source (`Source.run(..., tap=)`). Picklable.

    Attributes:
        state: what its sink is doing: updated by the sink in the process where it runs, and
            by `follow` in the pipeline's process when that is a decode worker.
    """

    state: TapState

    def sink(self) -> PacketSink:
        """Make the sink, where the source runs (once per run)."""
        ...

    def follow(self, state: TapState) -> None:
        """Take the state of this tap's copy in a decode worker."""
        ...
