"""``Scheduler``: the queue operations workers perform, each one short transaction.

Claiming is atomic across workers and machines: on PostgreSQL the claim transaction takes an
advisory lock (so the cluster-wide running limit is counted consistently) and picks the row with
``SELECT … FOR UPDATE SKIP LOCKED``; on SQLite every write transaction starts with ``BEGIN
IMMEDIATE`` (``storage.db``), which already serialises claimers. Order: highest priority first,
then oldest; a worker only takes a job whose resource request fits what it has free (CPU threads,
memory, GPUs — a job asking for GPUs only ever lands on a worker with GPUs: the GPU pool).

Leases: a claim gives the worker ``lease_s`` seconds; heartbeats extend it. A job whose lease
expired (its worker crashed or hung) is requeued by whichever worker polls next, or failed if it has
used all its attempts. Every write a worker makes about an attempt is fenced on
``(worker_id, attempts)``: a worker that lost its lease cannot overwrite the next attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stratum.governance.tables import OrgRow, ProjectRow
from stratum.jobs.schemas import Claim, Resources
from stratum.jobs.tables import JobRow
from stratum.storage import Database, advisory_lock, utcnow

Beat = Literal["ok", "cancel", "lost"]


@dataclass(frozen=True)
class Requeued:
    id: str
    status: str


class Scheduler:
    def __init__(self, db: Database, *, lease_s: float = 30.0, max_running: int = 0) -> None:
        self._db = db
        self.lease_s = lease_s
        self.max_running = max_running

    def claim(self, worker_id: str, free: Resources, *, now: datetime | None = None) -> Claim | None:
        """Take the best queued job that fits ``free``, or ``None``."""
        now = now or utcnow()
        with self._db.session() as session:
            advisory_lock(session, "stratum.jobs.claim")
            if self.max_running and self._running(session) >= self.max_running:
                return None
            query = (
                select(JobRow)
                .where(
                    JobRow.status == "queued",
                    JobRow.cpu_threads <= free.cpu_threads,
                    JobRow.memory_mb <= free.memory_mb,
                    JobRow.gpus <= free.gpus,
                )
                .order_by(JobRow.priority.desc(), JobRow.created_at, JobRow.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            row = session.execute(query).scalar_one_or_none()
            if row is None:
                return None
            row.status = "running"
            row.attempts += 1
            row.worker_id = worker_id
            row.started_at = now
            row.heartbeat_at = now
            row.lease_expires_at = now + timedelta(seconds=self.lease_s)
            resources = Resources(cpu_threads=row.cpu_threads, memory_mb=row.memory_mb, gpus=row.gpus)
            return Claim(
                id=row.id,
                kind=row.kind,
                attempt=row.attempts,
                config=row.config,
                resources=resources,
                project=self._project_path(session, row.project_id),
            )

    def heartbeat(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        *,
        progress: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Beat:
        """Extend the lease (and store progress). ``cancel``: the user asked to stop the job;
        ``lost``: the attempt is no longer this worker's (lease expired, requeued elsewhere)."""
        now = now or utcnow()
        with self._db.session() as session:
            row = self._fenced(session, worker_id, job_id, attempt)
            if row is None:
                return "lost"
            row.heartbeat_at = now
            row.lease_expires_at = now + timedelta(seconds=self.lease_s)
            if progress is not None and progress != row.progress:
                row.progress = progress
            return "cancel" if row.cancel_requested else "ok"

    def finish(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        *,
        ok: bool,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        progress: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> str | None:
        """Record the end of an attempt; returns the job's new status (``None``: not ours anymore).

        A failed attempt is requeued while attempts remain, unless a cancel was requested."""
        now = now or utcnow()
        with self._db.session() as session:
            row = self._fenced(session, worker_id, job_id, attempt)
            if row is None:
                return None
            if progress is not None:
                row.progress = progress
            if result is not None:
                row.result = result
            if metrics is not None:
                row.metrics = metrics
            row.error = None if ok else error
            if ok:
                self._close(row, "succeeded", now)
            elif row.cancel_requested:
                self._close(row, "cancelled", now)
            elif row.attempts < row.max_attempts:
                self._requeue(row)
            else:
                self._close(row, "failed", now)
            return row.status

    def release(self, worker_id: str, job_id: str, attempt: int) -> bool:
        """Give a running job back to the queue without counting the attempt (worker shutdown)."""
        with self._db.session() as session:
            row = self._fenced(session, worker_id, job_id, attempt)
            if row is None:
                return False
            if row.cancel_requested:
                self._close(row, "cancelled", utcnow())
            else:
                row.attempts -= 1
                self._requeue(row)
            return True

    def requeue_expired(self, *, now: datetime | None = None) -> list[Requeued]:
        """Requeue (or fail, after the last attempt) running jobs whose lease expired."""
        now = now or utcnow()
        with self._db.session() as session:
            query = (
                select(JobRow)
                .where(JobRow.status == "running", JobRow.lease_expires_at < now)
                .with_for_update(skip_locked=True)
            )
            changed = []
            for row in session.execute(query).scalars():
                lost = f"worker {row.worker_id} stopped heart-beating during attempt {row.attempts}"
                row.error = lost
                if row.cancel_requested:
                    self._close(row, "cancelled", now)
                elif row.attempts < row.max_attempts:
                    self._requeue(row)
                else:
                    self._close(row, "failed", now)
                changed.append(Requeued(row.id, row.status))
            return changed

    @staticmethod
    def _project_path(session: Session, project_id: str | None) -> str | None:
        if project_id is None:
            return None
        found = session.execute(
            select(OrgRow.name, ProjectRow.name)
            .join(ProjectRow, ProjectRow.org_id == OrgRow.id)
            .where(ProjectRow.id == project_id)
        ).first()
        return f"{found[0]}/{found[1]}" if found else None

    @staticmethod
    def _running(session: Session) -> int:
        return int(session.scalar(select(func.count()).where(JobRow.status == "running")) or 0)

    @staticmethod
    def _fenced(session: Session, worker_id: str, job_id: str, attempt: int) -> JobRow | None:
        query = (
            select(JobRow)
            .where(
                JobRow.id == job_id,
                JobRow.status == "running",
                JobRow.worker_id == worker_id,
                JobRow.attempts == attempt,
            )
            .with_for_update()
        )
        return session.execute(query).scalar_one_or_none()

    @staticmethod
    def _requeue(row: JobRow) -> None:
        row.status = "queued"
        row.worker_id = None
        row.lease_expires_at = None

    @staticmethod
    def _close(row: JobRow, status: str, now: datetime) -> None:
        row.status = status
        row.finished_at = now
        row.lease_expires_at = None
