"""`RetryPolicy` and `Backoff`: the delays, their jitter, the attempts, and that each user (live
sources, the webhook, the LLM client) keeps the delays it had before the value object."""

from __future__ import annotations

import itertools

import pytest

from streamer.core.retry import Backoff, RetryPolicy
from streamer.errors import ConfigError
from streamer.llm import LlmConfig
from streamer.sources import SourceOptions
from streamer.watch.webhook import WebhookPolicy


def _fixed(*values: float):
    cycle = itertools.cycle(values)
    return lambda: next(cycle)


def _delays(policy: RetryPolicy, random, count: int) -> list[float | None]:
    backoff = Backoff(policy, random=random)
    return [backoff.next_delay() for _ in range(count)]


def test_delays_double_from_initial_up_to_the_cap():
    policy = RetryPolicy(initial=0.5, cap=10.0, jitter=0.0)
    assert _delays(policy, _fixed(0.7), 7) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_only_shortens_within_its_fraction():
    policy = RetryPolicy(initial=1.0, cap=4.0, jitter=0.25)
    assert _delays(policy, _fixed(0.0), 4) == [1.0, 2.0, 4.0, 4.0]  # never above the cap
    lows = _delays(policy, _fixed(0.999999), 4)
    assert lows == pytest.approx([0.75, 1.5, 3.0, 3.0], abs=1e-5)
    assert _delays(policy, _fixed(0.5), 1) == [0.875]


def test_it_gives_up_after_max_attempts_and_resets_after_a_success():
    backoff = Backoff(RetryPolicy(initial=0.1, cap=1.0, jitter=0.0, max_attempts=3))
    assert [backoff.next_delay() for _ in range(3)] == [0.1, 0.2, None]
    assert backoff.failures == 3
    backoff.reset()
    assert backoff.next_delay() == 0.1


def test_one_attempt_means_no_retry():
    assert _delays(RetryPolicy(max_attempts=1), _fixed(0.5), 1) == [None]


def test_it_survives_a_source_down_for_days():
    backoff = Backoff(RetryPolicy(initial=0.5, cap=10.0, jitter=0.0))
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 10.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("initial", 0, "`initial` must be a positive number of seconds, got 0"),
        ("initial", float("nan"), "`initial` must be a positive number of seconds, got nan"),
        ("initial", "0.5", "`initial` must be a positive number of seconds, got '0.5'"),
        ("cap", float("inf"), "`cap` must be a positive number of seconds, got inf"),
        ("cap", True, "`cap` must be a positive number of seconds, got True"),
        ("cap", 0.1, "`cap` must be ≥ `initial` (0.5), got 0.1"),
        ("jitter", 1.5, "`jitter` must be a fraction in 0..1, got 1.5"),
        ("jitter", -0.1, "`jitter` must be a fraction in 0..1, got -0.1"),
        ("max_attempts", 0, "`max_attempts` must be a whole number ≥ 1, or None for no limit, "
         "got 0"),
        ("max_attempts", 2.5, "`max_attempts` must be a whole number ≥ 1, or None"),
        ("max_attempts", True, "`max_attempts` must be a whole number ≥ 1, or None"),
    ],
)  # fmt: skip
def test_bad_values_are_named_with_what_is_allowed(field, value, message):
    with pytest.raises(ConfigError) as caught:
        RetryPolicy(**{field: value})
    assert message in str(caught.value)


def test_a_policy_is_a_frozen_value_and_backoff_needs_one():
    policy = RetryPolicy(initial=0.2, cap=0.8)
    assert policy == RetryPolicy(initial=0.2, cap=0.8) and hash(policy) == hash(
        RetryPolicy(0.2, 0.8)
    )
    with pytest.raises(AttributeError):
        policy.cap = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="Backoff takes a RetryPolicy, got float"):
        Backoff(0.5)  # type: ignore[arg-type]


def test_each_user_keeps_its_defaults():
    assert SourceOptions().reconnect == RetryPolicy(0.5, 10.0, jitter=0.25, max_attempts=None)
    assert WebhookPolicy().retry == RetryPolicy(0.5, 8.0, jitter=0.5, max_attempts=5)
    assert LlmConfig().retry == RetryPolicy(0.5, 8.0, jitter=1.0, max_attempts=3)


# Midpoints of N equal slices of [0, 1): a uniform random's values, symmetric under r → 1 - r.
GRID = [(i + 0.5) / 200 for i in range(200)]


def _nth_delays(policy: RetryPolicy, n: int) -> list[float]:
    """The n-th delay (from 1) for each value of GRID as the random draw."""
    return [_delays(policy, _fixed(r), n)[-1] for r in GRID]


@pytest.mark.parametrize("n", [1, 2, 3, 4])  # the webhook gives up at the 5th failure
@pytest.mark.parametrize(
    ("policy", "initial", "cap", "jitter"),
    [(SourceOptions().reconnect, 0.5, 10.0, 0.25), (WebhookPolicy().retry, 0.5, 8.0, 0.5)],
    ids=["sources", "webhook"],
)
def test_live_sources_and_the_webhook_wait_as_before(policy, initial, cap, jitter, n):
    # before: base·(1 - jitter·r) with base = min(cap, initial·2^(n-1)), from their own fields
    base = min(cap, initial * 2 ** (n - 1))
    delays = _nth_delays(policy, n)
    assert delays == pytest.approx([base * (1 - jitter * r) for r in GRID])
    assert base * (1 - jitter) <= min(delays) and max(delays) <= base


@pytest.mark.parametrize("n", [1, 2])
def test_the_llm_client_keeps_full_jitter_uniform_up_to_the_ceiling(n):
    # before: rng·min(retry_cap, retry_base·2^(n-1)); now (1 - rng)·ceiling: the same uniform
    # distribution over [0, ceiling], the draws met in the opposite order
    ceiling = min(8.0, 0.5 * 2 ** (n - 1))
    delays = _nth_delays(LlmConfig().retry, n)
    assert sorted(delays) == pytest.approx(sorted(r * ceiling for r in GRID))
    assert 0 < min(delays) < 0.01 * ceiling and 0.99 * ceiling < max(delays) <= ceiling
    mean = sum(delays) / len(delays)
    assert mean == pytest.approx(ceiling / 2)


def test_the_llm_client_tries_three_times_as_before_two_retries():
    assert _delays(LlmConfig().retry, _fixed(0.5), 3) == [0.25, 0.5, None]
