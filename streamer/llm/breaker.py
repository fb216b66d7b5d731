"""A circuit breaker: stop sending to a server that keeps failing, and try it now and then.

::

    CLOSED ──(`failures` unavailability errors in a row)──► OPEN ──(`probe_every` s later)──►
    HALF-OPEN: one trial request goes through ─┬─ it succeeds ─► CLOSED
                                               └─ it fails ────► OPEN (the wait starts again)

Only reachability counts: an answer that is an error about the request (a context overflow, an
unknown model) proves the server is up, so it closes the breaker like a success.
`with_retries` is the loop every request goes through: the breaker asked first, retryable
failures retried with backoff until the attempts are used up or the breaker opens.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streamer.core.retry import Backoff
from streamer.errors import LlmError, LlmUnavailableError
from streamer.llm.health import LlmStats

__all__ = ["Breaker", "BreakerState", "with_retries"]

T = TypeVar("T")


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


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    breaker: Breaker,
    backoff: Backoff,
    *,
    sleep: Callable[[float], Awaitable[object]],
    stats: LlmStats,
    refused: Callable[[], LlmError],
) -> T:
    """`attempt()` through the breaker, retrying unavailability errors with `backoff`.

    Args:
        attempt: one request; raises `LlmError`s as classified.
        breaker: asked before every attempt and told how each one went.
        backoff: the delays between attempts, None when they are used up.
        sleep: awaited for each delay.
        stats: `rejected` and `retries` are counted here.
        refused: the error raised, nothing sent, while the breaker is open.

    Raises:
        LlmUnavailableError: the last attempt's, once the attempts are used up or the breaker
            opened (an open breaker's trials replace the retries).
        LlmError: any other, at once: the server answered, so it is up.
    """
    while True:
        if not breaker.allow():
            stats.rejected += 1
            raise refused()
        try:
            result = await attempt()
        except LlmUnavailableError:
            breaker.failure()
            opened = breaker.state is not BreakerState.CLOSED
            delay = backoff.next_delay()  # None: the attempts are used up
            if opened or delay is None:
                raise
        except LlmError:
            breaker.success()  # the server answered: it is up
            raise
        except BaseException:
            breaker.abandon()  # cancelled: do not leave a trial hanging
            raise
        else:
            breaker.success()
            return result
        stats.retries += 1
        await sleep(delay)
