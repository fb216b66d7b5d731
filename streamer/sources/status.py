"""What a live source is doing now: read by the pipeline for the overlay, the console and
the web/JSON outputs."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SourceStatus"]

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
        last_error: the last failure, redacted (safe to show); kept after recovery.
    """

    state: str = "connecting"
    offline_since: float | None = None
    reconnects: int = 0
    frames: int = 0
    last_error: str | None = None
