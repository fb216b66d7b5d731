"""A circuit breaker: stop sending to a server that keeps failing, and try it now and then.

::

    CLOSED ──(`failures` unavailability errors in a row)──► OPEN ──(`probe_every` s later)──►
    HALF-OPEN: one trial request goes through ─┬─ it succeeds ─► CLOSED
                                               └─ it fails ────► OPEN (the wait starts again)

Only reachability counts: an answer that is an error about the request (a context overflow, an
unknown model) proves the server is up, so it closes the breaker like a success.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["Breaker", "BreakerState"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Breaker:
    """Counts consecutive failures and decides, by the injected clock, whether to send.

    Args:
        failures: consecutive failures that open the breaker (≥ 1).
        probe_every: seconds an open breaker waits before letting one trial through.
        clock: monotonic seconds; tests pass a fake one and step it.
    """

    def __init__(self, failures: int, probe_every: float, clock: Callable[[], float]) -> None:
        self.failures = failures
        self.probe_every = probe_every
        self._clock = clock
        self._count = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> BreakerState:
        """Where the breaker stands now."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        return BreakerState.HALF_OPEN if self._trial else BreakerState.OPEN

    def allow(self) -> bool:
        """Whether a request may go out now; True at most once per wait while open."""
        if self._opened_at is None:
            return True
        if self._trial or self._clock() - self._opened_at < self.probe_every:
            return False
        self._trial = True
        return True

    def retry_in(self) -> float:
        """Seconds until an open breaker lets the next trial through (0 when closed)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.probe_every - self._clock())

    def success(self) -> None:
        """The server answered: close."""
        self._count = 0
        self._opened_at = None
        self._trial = False

    def abandon(self) -> None:
        """The request allowed through was cancelled: let the next one be the trial."""
        self._trial = False

    def failure(self) -> None:
        """The server was unreachable, timed out or failed: count, and open at the limit."""
        self._count += 1
        if self._trial or self._count >= self.failures:
            self._opened_at = self._clock()
            self._trial = False
