"""What the client reports about itself: its health (`LlmState`) and its counters (`LlmStats`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["LlmState", "LlmStats"]


class LlmState(enum.Enum):
    """The client's health, for the overlay and metrics."""

    OK = "ok"
    SLOW = "slow"  # captions come, slower than `slow_after`
    DOWN = "down"  # unreachable, timing out or failing; the breaker may be open
    NO_VISION = "text-only"  # captions come from the tags: the model takes no images
    ERROR = "error"  # a setup problem: no model loaded, unknown model, bad key, wrong URL


@dataclass
class LlmStats:
    """Counters for metrics.

    Attributes:
        requests: chat requests sent (every attempt, the image probe included).
        captions: captions returned.
        completions: text completions returned (`LlmClient.complete`: summaries, answers).
        errors: `caption` and `complete` calls that raised.
        retries: attempts made after a retryable failure.
        rejected: calls refused at once by the open breaker (nothing sent).
        fallbacks: image requests resent as tags only after an image error.
        last_latency_s: round trip of the last answered chat request, seconds.
    """

    requests: int = 0
    captions: int = 0
    completions: int = 0
    errors: int = 0
    retries: int = 0
    rejected: int = 0
    fallbacks: int = 0
    last_latency_s: float | None = None
