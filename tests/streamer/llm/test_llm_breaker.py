"""The circuit breaker, on a stepped clock."""

from __future__ import annotations

from streamer.llm.breaker import Breaker, BreakerState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_n_failures_in_a_row_and_a_success_resets_the_count():
    clock = Clock()
    breaker = Breaker(failures=3, probe_every=10, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == 10


def test_one_trial_goes_through_per_wait_and_its_outcome_decides():
    clock = Clock()
    breaker = Breaker(failures=1, probe_every=10, clock=clock)
    breaker.failure()
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow()  # the trial
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one at a time
    breaker.failure()  # the trial failed: wait again from now
    assert breaker.state is BreakerState.OPEN
    clock.now = 19.0
    assert not breaker.allow()
    clock.now = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_an_abandoned_trial_lets_the_next_request_be_the_trial():
    clock = Clock()
    breaker = Breaker(failures=1, probe_every=5, clock=clock)
    breaker.failure()
    clock.now = 5
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()
