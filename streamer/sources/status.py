"""What a live source is doing now: read by the pipeline for the overlay, the console and
the web/JSON outputs."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SourceStatus", "damaged_count"]

STATES = ("connecting", "online", "offline", "ended", "failed")


@dataclass(slots=True)
class SourceStatus:
    """The state of one live source, updated on the event loop's thread.

    Attributes:
        state: "connecting" (first open), "online" (frames flowing), "offline" (lost or never
            reached; reconnecting), "ended" (the stream finished), "failed" (gave up: a
            permanent error or `max_attempts` reached).
        offline_since: `time.time()` when it went offline; None while online.
        reconnects: reopen attempts after the first one, successful or not.
        frames: frames decoded and handed on, over all connections.
        damaged: packets that failed to decode plus pictures the decoder flagged as decoded
            with errors, over all connections: the sign of packets lost between the camera
            and here (RTSP over UDP, Wi-Fi). A lower bound, not a loss rate: FFmpeg's H.264
            decoder with slice threads (how live streams decode) flags only part of the
            pictures that miss a slice.
        last_error: the last failure, redacted (safe to show); kept after recovery.
    """

    state: str = "connecting"
    offline_since: float | None = None
    reconnects: int = 0
    frames: int = 0
    damaged: int = 0
    last_error: str | None = None


def damaged_count(source: object) -> int:
    """What a stream's source counted as damaged, for every place that reports it: a live
    source's `status.damaged`, a file's `corrupt_packets` (a file counts packets that failed
    to decode only)."""
    status = getattr(source, "status", None)
    if status is not None:
        return int(getattr(status, "damaged", 0))
    return int(getattr(source, "corrupt_packets", 0))
