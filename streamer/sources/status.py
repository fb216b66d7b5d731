"""What a source is doing now: read by the pipeline for the overlay, the console and the
web/JSON outputs."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DELIVERING_STATES", "FILE_STATES", "LIVE_STATES", "SourceStatus"]

#: The states of a source that connects (a camera, a network stream).
LIVE_STATES = ("connecting", "online", "offline", "ended", "failed")
#: The states of a local file: it plays until it ends (`incomplete` says whether it ended early).
FILE_STATES = ("playing", "ended")
#: The states in which frames arrive: a camera's "online", a file's "playing".
DELIVERING_STATES = ("online", "playing")


@dataclass(slots=True)
class SourceStatus:
    """The state of one source, updated by the source itself.

    Attributes:
        state: for a source that connects, "connecting" (first open), "online" (frames
            flowing), "offline" (lost or never reached; reconnecting), "ended" (the stream
            finished), "failed" (gave up: a permanent error or `max_attempts` reached). For a
            file, "playing", then "ended" once it has been read to its end (or as far as it
            decodes). A source that was stopped keeps the state it had.
        offline_since: `time.time()` when it went offline; None while online (and for files).
        reconnects: reopen attempts after the first one, successful or not (0 for files).
        frames: frames decoded and handed on, over all connections.
        damaged: what the source counted as damaged. A live source: packets that failed to
            decode plus pictures the decoder flagged as decoded with errors, over all
            connections: the sign of packets lost between the camera and here (RTSP over UDP,
            Wi-Fi). A lower bound, not a loss rate: FFmpeg's H.264 decoder with slice threads
            (how live streams decode) flags only part of the pictures that miss a slice. A
            file: packets that failed to decode and were skipped.
        last_error: the last failure of a live source, redacted (safe to show); kept after
            recovery. None for files (their `incomplete` says why they ended early).
    """

    state: str = "connecting"
    offline_since: float | None = None
    reconnects: int = 0
    frames: int = 0
    damaged: int = 0
    last_error: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the source got to its own end or gave up for good, rather than being
        stopped (or still running)."""
        return self.state in ("ended", "failed")
