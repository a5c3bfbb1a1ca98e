"""The circuit breaker's states: closed → open after N failures → half-open after the wait → closed."""

from __future__ import annotations

from stratum.routing.circuit import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_recovers_through_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, open_s=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.success()  # a success resets the count: failures must be consecutive
    for _ in range(3):
        breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 9.9
    assert not breaker.allow()
    clock.now = 10.0
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # exactly one trial at a time
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_a_failed_trial_opens_again_for_a_full_wait() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, open_s=5, clock=clock)
    breaker.failure()
    clock.now = 5
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    clock.now = 9
    assert not breaker.allow()
    clock.now = 10
    assert breaker.allow()


def test_released_trial_lets_the_next_request_try_and_health_checks_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, open_s=100, clock=clock)
    breaker.health(False)
    breaker.health(False)
    assert breaker.state == "open"
    breaker.health(True)  # reachable again: one trial without waiting the full period
    assert breaker.allow() and not breaker.allow()
    breaker.release()
    assert breaker.allow()
