"""Retry with exponential backoff and jitter: one value object, one counter; neither sleeps.

`RetryPolicy` says how a failing operation is retried (reconnecting a camera, resending a
webhook, asking the LLM again); `Backoff` counts one run of failures under it and returns the
delays. The caller sleeps (on a stop-aware wait), so a test steps through the delays without
waiting and a stop interrupts a long delay at once.

Who uses it, with which jitter::

    sources (SourceOptions.reconnect)   jitter 0.25   a delay in [0.75·d, d]; None: no limit
    webhook (WebhookPolicy.retry)       jitter 0.5    a delay in [0.5·d, d]; 5 attempts
    LLM client (LlmConfig.retry)        jitter 1.0    "full jitter": uniform in [0, d]; 3 attempts

where d = min(cap, initial · 2^(n-1)) for the n-th failure in a row.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from streamer.core.options import Ordered
from streamer.errors import ConfigError

__all__ = ["Backoff", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing operation is retried.

    The n-th failure in a row (from 1) waits `d = min(cap, initial * 2**(n-1))` less a random
    fraction of up to `jitter` of it: a delay in `[d * (1 - jitter), d]`. The jitter spreads the
    retries of many clients that failed together (cameras behind a rebooted switch) so they do
    not hit the server in step; it only shortens, so `cap` is a true upper bound.

    Attributes:
        initial: the first delay, seconds (> 0).
        cap: the longest delay, seconds (≥ `initial`).
        jitter: the fraction of each delay that is random, 0..1 (1: "full jitter").
        max_attempts: attempts in a row, the first included, before giving up; None retries
            forever.

    Raises:
        ConfigError: a value out of range, named with what is allowed.

    Example:
        >>> policy = RetryPolicy(initial=0.5, cap=10.0, jitter=0.0)
        >>> backoff = Backoff(policy)
        >>> [backoff.next_delay() for _ in range(6)]
        [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    """

    initial: float = 0.5
    cap: float = 10.0
    jitter: float = 0.25
    max_attempts: int | None = None

    # Declared for the command line, which checks it in the flags' names before the policy is
    # made (`--reconnect-max` ≥ `--reconnect-initial`); __post_init__ checks it for the API.
    RULES: ClassVar = (Ordered("cap", "≥", "initial"),)

    def __post_init__(self) -> None:
        for name in ("initial", "cap"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"`{name}` must be a positive number of seconds, got {value!r}")
        if self.cap < self.initial:
            raise ConfigError(f"`cap` must be ≥ `initial` ({self.initial}), got {self.cap}")
        if not _is_number(self.jitter) or not 0 <= self.jitter <= 1:
            raise ConfigError(f"`jitter` must be a fraction in 0..1, got {self.jitter!r}")
        attempts = self.max_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ConfigError(
                f"`max_attempts` must be a whole number ≥ 1, or None for no limit, got {attempts!r}"
            )


class Backoff:
    """The delays of one run of failures under a `RetryPolicy`.

    Args:
        policy: the delays and the number of attempts.
        random: returns floats in [0, 1); injectable so tests are exact.
    """

    def __init__(self, policy: RetryPolicy, random: Callable[[], float] = _random.random) -> None:
        if not isinstance(policy, RetryPolicy):
            raise TypeError(f"Backoff takes a RetryPolicy, got {type(policy).__name__}")
        self.policy = policy
        self._random = random
        self.failures = 0

    def next_delay(self) -> float | None:
        """Count one failed attempt; return how long to wait before the next, or None when
        `max_attempts` attempts in a row have failed (give up)."""
        self.failures += 1
        policy = self.policy
        if policy.max_attempts is not None and self.failures >= policy.max_attempts:
            return None
        # min() first: 2**n overflows a float after ~1000 failures of a source down for days.
        exponent = min(self.failures - 1, 64)
        ceiling = min(policy.cap, policy.initial * 2.0**exponent)
        return ceiling * (1.0 - policy.jitter * self._random())

    def reset(self) -> None:
        """Start over after a success: the next outage begins at `initial` again."""
        self.failures = 0


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
