"""Counter stores: all-or-nothing reservations, exact under threads, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from stratum.governance.counters import Claim, CounterStore, MemoryCounters, StoreCounters
from stratum.storage import Database, utcnow


@pytest.fixture(params=["memory", "store"])
def counters(request: pytest.FixtureRequest, db: Database) -> CounterStore:
    # ``db`` is parametrised over SQLite and PostgreSQL; the memory fake ignores it.
    return MemoryCounters() if request.param == "memory" else StoreCounters(db)


def _claim(key: str, amount: int, limit: int) -> Claim:
    return Claim(key, amount, limit, utcnow() + timedelta(minutes=1), f"project.{key}")


def test_reserve_is_all_or_nothing(counters: CounterStore) -> None:
    assert counters.reserve([_claim("a", 5, 10), _claim("b", 5, 6)]) is None
    refusal = counters.reserve([_claim("a", 5, 10), _claim("b", 5, 6)])
    assert refusal is not None and refusal.claim.key == "b" and refusal.current == 5
    assert (counters.value("a"), counters.value("b")) == (5, 5)  # "a" was not added either
    counters.adjust({"a": -3, "missing": 4})
    assert counters.value("a") == 2 and counters.value("missing") == 0


def test_concurrent_reservations_never_pass_the_limit(counters: CounterStore) -> None:
    def work(_: int) -> bool:
        ok = counters.reserve([_claim("budget", 7, 500)]) is None
        if ok:
            counters.adjust({"budget": -2})  # settle: 5 of the 7 used
        return ok

    with ThreadPoolExecutor(max_workers=16) as pool:
        granted = sum(pool.map(work, range(200)))
    assert counters.value("budget") == granted * 5 <= 500
    assert granted >= 500 // 7


def test_prune_drops_finished_windows(counters: CounterStore) -> None:
    counters.reserve([Claim("old", 1, 10, utcnow() - timedelta(seconds=1)), _claim("new", 1, 10)])
    assert counters.prune(utcnow()) == 1
    assert (counters.value("old"), counters.value("new")) == (0, 1)
