"""The batched writer of per-request records: usage rows and their audit entries off the request path.

Requests hand their ``UsageEntry`` (or a standalone ``AuditEvent``, e.g. a prompt the guard blocked)
to ``submit``, which only enqueues. One background thread takes whatever has accumulated — up to
``max_batch`` items, waiting at most ``interval_s`` after the first — and writes it in one
transaction. One writer keeps the hash chain linear without contention between requests (admin
changes still append under the chain's lock, in their own transactions).

Nothing is lost on a graceful shutdown: ``close()`` stops taking new items, writes everything queued
and joins the thread (the gateway calls it in its lifespan's shutdown). ``flush()`` waits until
everything submitted so far is written (admin reads of usage and the audit log call it first, so a
report includes the request that just finished).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from stratum.governance import audit
from stratum.governance.usage import UsageEntry, UsageService
from stratum.storage import Database

log = logging.getLogger(__name__)

# Items written per transaction at most; one transaction per ~256 requests keeps SQLite's single
# writer free most of the time.
DEFAULT_MAX_BATCH = 256
# How long the first item of a batch waits for company (bounds the delay before a record is visible).
DEFAULT_INTERVAL_S = 0.05
# Attempts at writing one batch before it is given up (logged with its size).
_ATTEMPTS = 5


@dataclass(frozen=True)
class AuditEvent:
    actor: str
    action: str
    target: str
    org_id: str | None = None
    project_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


Item = UsageEntry | AuditEvent
_STOP = object()


class AuditWriter:
    """Serves: the gateway (``submit`` per request; ``flush`` before reads; ``close`` at shutdown)."""

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        interval_s: float = DEFAULT_INTERVAL_S,
        write: Callable[[Session, Sequence[Item]], None] | None = None,
    ) -> None:
        self._db = db
        self._usage = UsageService(db)
        self._write = write or self._write_batch
        self.max_batch = max_batch
        self.interval_s = interval_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="stratum-audit-writer", daemon=True)
        self._thread.start()
        self.written = 0
        self.dropped = 0

    def submit(self, item: Item) -> None:
        if self._closed:
            # After shutdown began (a straggling request): write it now rather than lose it.
            self._write_with_retry([item])
            return
        self._queue.put(item)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every item submitted before this call is written; False on timeout."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("the audit writer did not finish within %.0f s; some records may be lost", timeout_s)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[Item] = []
            waiters: list[threading.Event] = []
            deadline = time.monotonic() + self.interval_s
            item = first
            while True:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                if stopping or len(batch) >= self.max_batch:
                    break
                # A flush request does not wait for company: write what is there now.
                remaining = 0.0 if waiters else deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
            if stopping:  # drain whatever was queued behind the stop marker
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, threading.Event):
                        waiters.append(item)
                    elif item is not _STOP:
                        batch.append(item)
            if batch:
                self._write_with_retry(batch)
            for waiter in waiters:
                waiter.set()

    def _write_with_retry(self, batch: Sequence[Item]) -> None:
        for attempt in range(_ATTEMPTS):
            try:
                with self._db.session() as session:
                    self._write(session, batch)
                self.written += len(batch)
                return
            except Exception:
                if attempt == _ATTEMPTS - 1:
                    self.dropped += len(batch)
                    log.exception("could not write %d usage/audit records; giving up", len(batch))
                    return
                log.warning("could not write %d usage/audit records; retrying", len(batch), exc_info=True)
                time.sleep(0.1 * 2**attempt)

    def _write_batch(self, session: Session, batch: Sequence[Item]) -> None:
        """Usage records with their audit entries, then standalone events, in submission order."""
        run: list[UsageEntry] = []
        for item in batch:
            if isinstance(item, UsageEntry):
                run.append(item)
                continue
            if run:
                self._usage.record_in(session, run)
                run = []
            audit.append(
                session,
                actor=item.actor,
                action=item.action,
                target=item.target,
                org_id=item.org_id,
                project_id=item.project_id,
                detail=item.detail,
            )
        if run:
            self._usage.record_in(session, run)
