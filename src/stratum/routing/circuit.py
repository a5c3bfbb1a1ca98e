"""A circuit breaker per backend: stop sending traffic to a backend that keeps failing.

    closed ──(``failures`` consecutive failures)──▶ open ──(``open_s`` elapsed)──▶ half-open
       ▲                                              ▲                              │
       └───────────── trial request succeeds ─────────┴──── trial request fails ─────┘

While open, the router skips the backend (the next backend or fallback link answers at once
instead of waiting for a timeout). Half-open lets exactly one trial request through. A failed
health check counts as a failure; a passing one while open moves the breaker to half-open early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]
STATE_VALUES: dict[CircuitState, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    def __init__(self, *, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.open_s = open_s
        self._clock = clock
        self.state: CircuitState = "closed"
        self.failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    def allow(self) -> bool:
        """May a request go to this backend now? (Reserves the half-open trial if it is free.)"""
        if self.state == "open" and self._clock() - self._opened_at >= self.open_s:
            self.state = "half_open"
            self._trial_in_flight = False
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def success(self) -> None:
        self.state, self.failures, self._trial_in_flight = "closed", 0, False

    def failure(self) -> None:
        self.failures += 1
        self._trial_in_flight = False
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state = "open"
            self._opened_at = self._clock()

    def release(self) -> None:
        """A trial that ended without a verdict (client left): let the next request try."""
        self._trial_in_flight = False

    def health(self, ok: bool) -> None:
        if ok and self.state == "open":
            self.state, self._trial_in_flight = "half_open", False
        elif not ok:
            self.failure()
