"""Which version served each response: remembered in memory at response time, written in batches.

Writing a row on the response path would add a store round trip (and, on SQLite, a write lock) to
every request. Instead the gateway calls ``remember`` (a dict insert and a list append under a
lock), and a background task calls ``flush`` about once a second, inserting everything pending in
one transaction. Between remembering and flushing, ``lookup`` answers from memory, so feedback sent
to the same gateway right after the response is attributed; another gateway sees the response
after the next flush (≈1 s). If the store is down, pending rows are kept (up to ``max_pending``;
beyond that the oldest are dropped and counted in ``dropped``) and written at the next flush.

The rows serve two readers: feedback attribution (``lookup``) and the deployment controllers,
which compare per-version status and latency over a sliding window. Because every gateway flushes
into the same table, all gateways' controllers see the same numbers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from stratum.registry.tables import ServedResponseRow
from stratum.storage import Database, utcnow

log = logging.getLogger(__name__)

# Responses kept in memory for lookups: a few minutes of traffic at hundreds of requests/s.
_MEMORY_ENTRIES = 100_000
# Rows waiting for the store before the oldest are dropped (a store outage must not eat memory).
_MAX_PENDING = 200_000
# Rows per INSERT statement.
_INSERT_BATCH = 1_000


@dataclass(frozen=True)
class ServedResponse:
    request_id: str
    model: str
    version_ref: str
    status: int
    latency_ms: float
    response_id: str | None = None
    deployment: str | None = None
    key_id: str | None = None
    org_id: str | None = None
    project_id: str | None = None
    at: datetime = field(default_factory=utcnow)
    # The chat request's messages and the first answer, after the guard's masking (None: not kept).
    prompt: list[dict[str, Any]] | None = None
    answer: str | None = None


class ResponseLog:
    """Serves: the gateway's inference routes (``remember``), its flusher task (``flush``), feedback
    (``lookup``) and the deployment controllers (through the table)."""

    def __init__(self, db: Database, *, max_pending: int = _MAX_PENDING) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._pending: list[ServedResponse] = []
        self._recent: OrderedDict[str, ServedResponse] = OrderedDict()
        self._max_pending = max_pending
        self.dropped = 0

    def remember(self, entry: ServedResponse) -> None:
        with self._lock:
            self._pending.append(entry)
            if len(self._pending) > self._max_pending:
                overflow = len(self._pending) - self._max_pending
                del self._pending[:overflow]
                self.dropped += overflow
            if entry.response_id is not None:
                self._recent[entry.response_id] = entry
                while len(self._recent) > _MEMORY_ENTRIES:
                    self._recent.popitem(last=False)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write what is pending in one transaction; on failure keep it for the next flush."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        rows = [asdict(entry) for entry in batch]
        try:
            with self._db.session() as session:
                for start in range(0, len(rows), _INSERT_BATCH):
                    session.execute(insert(ServedResponseRow), rows[start : start + _INSERT_BATCH])
        except IntegrityError:
            # A row the store refuses (a duplicate response id) must not block every later batch:
            # write the rows one by one and drop only the refused ones.
            return self._flush_one_by_one(rows)
        except Exception:
            with self._lock:
                self._pending[:0] = batch
            raise
        return len(batch)

    def _flush_one_by_one(self, rows: list[dict[str, object]]) -> int:
        written = 0
        for row in rows:
            try:
                with self._db.session() as session:
                    session.execute(insert(ServedResponseRow), [row])
                written += 1
            except IntegrityError:
                self.dropped += 1
                log.warning(
                    "dropped a served-response record the store refused",
                    extra={"request_id": row["request_id"]},
                )
        return written

    def lookup(self, response_id: str) -> ServedResponse | None:
        with self._lock:
            entry = self._recent.get(response_id)
        if entry is not None:
            return entry
        with self._db.session(write=False) as session:
            row = session.scalars(
                select(ServedResponseRow).where(ServedResponseRow.response_id == response_id)
            ).first()
            if row is None:
                return None
            return ServedResponse(
                request_id=row.request_id,
                model=row.model,
                version_ref=row.version_ref,
                status=row.status,
                latency_ms=row.latency_ms,
                response_id=row.response_id,
                deployment=row.deployment,
                key_id=row.key_id,
                org_id=row.org_id,
                project_id=row.project_id,
                at=row.at,
                prompt=row.prompt,
                answer=row.answer,
            )

    def prune(self, before: datetime) -> int:
        """Delete rows older than ``before`` (feedback on them can no longer be attributed)."""
        with self._db.session() as session:
            result = session.execute(delete(ServedResponseRow).where(ServedResponseRow.at < before))
            return int(getattr(result, "rowcount", 0) or 0)
