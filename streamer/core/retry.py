"""Exponential backoff with jitter, as plain arithmetic: it returns delays and never sleeps.

The caller sleeps (on a stop-aware wait), so a test steps through the delays without waiting
and a stop interrupts a long delay at once.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays between reconnect attempts: `initial`, doubling per failure, capped, jittered.

    The n-th consecutive failure (from 1) waits `base = min(cap, initial * 2**(n-1))` less a
    random fraction of up to `jitter` of it: a delay in `[base * (1 - jitter), base]`. The
    jitter spreads the reconnects of many cameras that dropped together (a switch reboot) so
    they do not hit the server in step; it only shortens, so `cap` is a true upper bound.

    Args:
        initial: first delay, seconds (> 0).
        cap: largest delay, seconds (≥ initial).
        jitter: fraction of the delay that is random, 0..1.
        max_attempts: consecutive failed attempts allowed before giving up; None retries forever.
        random: a function returning floats in [0, 1); injectable so tests are exact.

    Example:
        >>> b = Backoff(0.5, 10.0, jitter=0.0)
        >>> [b.next_delay() for _ in range(6)]
        [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    """

    def __init__(
        self,
        initial: float,
        cap: float,
        jitter: float = 0.25,
        max_attempts: int | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError(f"need 0 < initial ≤ cap, got initial={initial}, cap={cap}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be a fraction in 0..1, got {jitter}")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be ≥ 1 or None, got {max_attempts}")
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self.max_attempts = max_attempts
        self._random = random
        self.failures = 0

    def next_delay(self) -> float | None:
        """Count one failed attempt; return how long to wait before the next, or None when
        `max_attempts` consecutive attempts have failed (give up)."""
        self.failures += 1
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            return None
        # min() first: 2**n overflows a float after ~1000 failures of a source down for days.
        exponent = min(self.failures - 1, 64)
        base = min(self.cap, self.initial * 2.0**exponent)
        return base * (1.0 - self.jitter * self._random())

    def reset(self) -> None:
        """Start over after a success: the next outage begins at `initial` again."""
        self.failures = 0
