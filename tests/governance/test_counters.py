"""Counter stores: all-or-nothing reservations, exact under threads, on memory, SQLite, PostgreSQL, Redis."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from stratum.governance.counters import Claim, CounterStore, MemoryCounters, StoreCounters
from stratum.governance.redis_counters import RedisCounterStore
from stratum.storage import utcnow
from tests.conftest import fresh_database


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def counters(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounters()
    elif request.param == "redis":
        yield request.getfixturevalue("redis_counters")
    else:
        with fresh_database(request.param, tmp_path) as db:
            db.migrate()
            yield StoreCounters(db)


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
    # Redis drops a finished window by itself (its expiry), so its prune has nothing left to count.
    assert counters.prune(utcnow()) == (0 if isinstance(counters, RedisCounterStore) else 1)
    assert (counters.value("old"), counters.value("new")) == (0, 1)


@pytest.mark.redis
def test_redis_windows_expire_by_themselves(redis_counters: RedisCounterStore) -> None:
    soon = utcnow() + timedelta(milliseconds=300)
    assert redis_counters.reserve([Claim("minute", 3, 10, soon), _claim("month", 3, 10)]) is None
    redis_counters.adjust({"minute": 2, "month": 2})  # settling keeps the window's expiry
    assert (redis_counters.value("minute"), redis_counters.value("month")) == (5, 5)
    time.sleep(0.5)
    assert (redis_counters.value("minute"), redis_counters.value("month")) == (0, 5)
    redis_counters.adjust({"minute": 4})  # a settlement after the window ended creates nothing
    assert redis_counters.value("minute") == 0


def test_redis_without_the_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # makes ``import redis`` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'stratum\[redis\]'"):
        RedisCounterStore("redis://127.0.0.1:1/0")
