"""Quota counters behind a small protocol: the store (default), an in-memory fake; Redis slots in later.

A ``Claim`` asks to add ``amount`` to counter ``key`` if that keeps it at or under ``limit``.
``reserve`` applies all claims of one request or none of them, atomically, so concurrent requests
can never together pass a limit; ``adjust`` later moves counters by signed deltas (settling a
reservation to actual usage). Counters belong to a window and expire with it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, select, update

from stratum.governance.tables import CounterRow
from stratum.storage import Database, advisory_lock, utcnow


@dataclass(frozen=True)
class Claim:
    key: str
    amount: int
    limit: int
    expires_at: datetime
    # Which limit this is, e.g. "project.tpm", for the 429 the caller raises.
    limit_name: str = ""


@dataclass(frozen=True)
class Refusal:
    claim: Claim
    current: int


class CounterStore(Protocol):
    """Serves: ``QuotaService``. Implementations must make ``reserve`` atomic across processes."""

    def reserve(self, claims: Sequence[Claim]) -> Refusal | None:
        """Add every claim's amount, or none if any would exceed its limit (returns that one)."""
        ...

    def adjust(self, deltas: Mapping[str, int]) -> None:
        """Add signed deltas to existing counters (missing or expired ones are skipped)."""
        ...

    def value(self, key: str) -> int: ...

    def prune(self, now: datetime) -> int:
        """Drop counters whose window ended; returns how many."""
        ...


class MemoryCounters:
    """In-process counters: the fake for tests, and exact within one process."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[int, datetime]] = {}
        self._lock = threading.Lock()

    def reserve(self, claims: Sequence[Claim]) -> Refusal | None:
        with self._lock:
            for claim in claims:
                current = self._values.get(claim.key, (0, claim.expires_at))[0]
                if current + claim.amount > claim.limit:
                    return Refusal(claim, current)
            for claim in claims:
                current = self._values.get(claim.key, (0, claim.expires_at))[0]
                self._values[claim.key] = (current + claim.amount, claim.expires_at)
        return None

    def adjust(self, deltas: Mapping[str, int]) -> None:
        with self._lock:
            for key, delta in deltas.items():
                if key in self._values:
                    current, expires = self._values[key]
                    self._values[key] = (current + delta, expires)

    def value(self, key: str) -> int:
        with self._lock:
            return self._values.get(key, (0, utcnow()))[0]

    def prune(self, now: datetime) -> int:
        with self._lock:
            ended = [key for key, (_, expires) in self._values.items() if expires <= now]
            for key in ended:
                del self._values[key]
            return len(ended)


class StoreCounters:
    """Counters in the database, shared by every gateway process on it.

    One write transaction per reservation. PostgreSQL: transaction advisory locks on each counter
    (they also cover counters not created yet), taken in sorted order so two requests sharing
    counters cannot deadlock, then row locks. SQLite: the write transaction holds the database lock.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def reserve(self, claims: Sequence[Claim]) -> Refusal | None:
        if not claims:
            return None
        keys = sorted({claim.key for claim in claims})
        with self._db.session() as session:
            for key in keys:
                advisory_lock(session, f"quota:{key}")
            # FOR UPDATE (PostgreSQL; SQLite already holds the lock): a concurrent ``adjust`` commits
            # before we read or waits until we commit, so no settlement is lost or missed.
            query = select(CounterRow.key, CounterRow.value).where(CounterRow.key.in_(keys))
            rows = session.execute(query.order_by(CounterRow.key).with_for_update()).all()
            current: dict[str, int] = {key: value for key, value in rows}
            for claim in claims:
                if current.get(claim.key, 0) + claim.amount > claim.limit:
                    return Refusal(claim, current.get(claim.key, 0))
            for claim in claims:
                if claim.key in current:
                    session.execute(
                        update(CounterRow)
                        .where(CounterRow.key == claim.key)
                        .values(value=CounterRow.value + claim.amount)
                    )
                else:
                    session.add(CounterRow(key=claim.key, value=claim.amount, expires_at=claim.expires_at))
        return None

    def adjust(self, deltas: Mapping[str, int]) -> None:
        changes = {key: delta for key, delta in deltas.items() if delta}
        if not changes:
            return
        with self._db.session() as session:
            for key in sorted(changes):
                # value = value + delta in one statement: atomic without a lock.
                session.execute(
                    update(CounterRow)
                    .where(CounterRow.key == key)
                    .values(value=CounterRow.value + changes[key])
                )

    def value(self, key: str) -> int:
        with self._db.session(write=False) as session:
            return session.scalar(select(CounterRow.value).where(CounterRow.key == key)) or 0

    def prune(self, now: datetime) -> int:
        with self._db.session() as session:
            result = session.execute(delete(CounterRow).where(CounterRow.expires_at <= now))
            return int(getattr(result, "rowcount", 0) or 0)
