"""Quotas: requests/min, tokens/min and monthly token budgets, per key, project and org.

Exact under concurrency by reserving the worst case before the model runs and settling afterwards:

    reservation = quotas.reserve(principal, tokens=prompt + max_tokens)   # 429 if any level would pass
    ...generate...
    quotas.settle(reservation, tokens=actual)                              # gives back the unused part

Every level with a limit adds a claim; ``CounterStore.reserve`` applies all claims or none. Windows
are fixed: the UTC minute for rpm/tpm, the UTC calendar month for budgets (so budgets reset monthly).
The request itself counts towards rpm and is not given back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from stratum.errors import QuotaExceeded
from stratum.governance.counters import Claim, CounterStore
from stratum.governance.schemas import Limits, Principal
from stratum.storage import utcnow

_METRIC_TEXT = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "token_budget": "monthly token budget",
    "cost_budget": "monthly cost budget",
}
# Money is counted in millionths (the 6 decimal places costs are recorded with), as integer counters.
_MICROS = Decimal(1_000_000)


def micros(amount: Decimal) -> int:
    return int((amount * _MICROS).to_integral_value(rounding=ROUND_CEILING))


@dataclass
class Reservation:
    """Token claims held for one request until ``settle``."""

    tokens: int
    token_keys: list[str] = field(default_factory=list)
    settled: bool = False
    cost_micros: int = 0
    cost_keys: list[str] = field(default_factory=list)


def _levels(principal: Principal) -> list[tuple[str, str, str, Limits]]:
    """(level, id, display name, limits) for every level the principal's requests count against."""
    levels = []
    if principal.org is not None:
        levels.append(("org", principal.org.id, principal.org.name, principal.org.limits))
    if principal.project is not None:
        levels.append(("project", principal.project.id, principal.project.name, principal.project.limits))
    levels.append(("key", principal.key_id, principal.name, principal.limits))
    return levels


def _month_end(now: datetime) -> datetime:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


class QuotaService:
    """Serves: the gateway's metering (reserve before generating, settle after)."""

    def __init__(self, counters: CounterStore, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.counters = counters
        self._clock = clock

    def has_token_limits(self, principal: Principal) -> bool:
        return any(limits.tpm or limits.token_budget for *_, limits in _levels(principal))

    def has_cost_limits(self, principal: Principal) -> bool:
        return any(limits.cost_budget for *_, limits in _levels(principal))

    def reserve(self, principal: Principal, *, tokens: int, cost: Decimal = Decimal(0)) -> Reservation:
        """Count one request of up to ``tokens`` tokens and ``cost`` at every level, or raise
        ``QuotaExceeded``."""
        now = self._clock()
        minute = now.replace(second=0, microsecond=0)
        minute_end = minute + timedelta(minutes=1)
        month_end = _month_end(now)
        claims: list[Claim] = []
        token_keys: list[str] = []
        cost_keys: list[str] = []
        cost_micros = micros(cost)
        for level, ident, _, limits in _levels(principal):
            if limits.rpm:
                key = f"{level}:{ident}:rpm:{minute:%Y%m%d%H%M}"
                claims.append(Claim(key, 1, limits.rpm, minute_end, f"{level}.rpm"))
            if limits.tpm:
                key = f"{level}:{ident}:tpm:{minute:%Y%m%d%H%M}"
                claims.append(Claim(key, tokens, limits.tpm, minute_end, f"{level}.tpm"))
                token_keys.append(key)
            if limits.token_budget:
                key = f"{level}:{ident}:tokens:{now:%Y%m}"
                claims.append(Claim(key, tokens, limits.token_budget, month_end, f"{level}.token_budget"))
                token_keys.append(key)
            if limits.cost_budget:
                key = f"{level}:{ident}:cost:{now:%Y%m}"
                claims.append(
                    Claim(key, cost_micros, micros(limits.cost_budget), month_end, f"{level}.cost_budget")
                )
                cost_keys.append(key)
        refusal = self.counters.reserve(claims)
        if refusal is not None:
            claim = refusal.claim
            level, metric = claim.limit_name.split(".")
            name = {lvl: display for lvl, _, display, _ in _levels(principal)}[level]
            limit, used, amount = claim.limit, refusal.current, claim.amount
            if metric == "cost_budget":
                limit, used, amount = (Decimal(n) / _MICROS for n in (limit, used, amount))  # type: ignore[assignment]
            needs = "" if metric == "rpm" else f"; this request needs up to {amount}"
            raise QuotaExceeded(
                f"Rate limit reached for {level} '{name}': {_METRIC_TEXT[metric]} limit is {limit}, "
                f"{used} used{needs}.",
                limit=claim.limit_name,
                code=f"{metric}_exceeded",
            )
        return Reservation(tokens=tokens, token_keys=token_keys, cost_micros=cost_micros, cost_keys=cost_keys)

    def settle(self, reservation: Reservation, *, tokens: int, cost: Decimal = Decimal(0)) -> None:
        """Replace the reserved worst case by the ``tokens`` actually used (once; later calls do nothing)."""
        if reservation.settled:
            return
        reservation.settled = True
        delta = tokens - reservation.tokens
        if delta and reservation.token_keys:
            self.counters.adjust({key: delta for key in reservation.token_keys})
        cost_delta = micros(cost) - reservation.cost_micros
        if cost_delta and reservation.cost_keys:
            self.counters.adjust({key: cost_delta for key in reservation.cost_keys})
