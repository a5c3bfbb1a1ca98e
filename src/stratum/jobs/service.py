"""``JobService``: what users do with jobs — submit, list, show, cancel, retry, read logs.

Serves the CLI (``stratum jobs …``) and the admin API (``/admin/v1/…/jobs``). Running jobs is the
scheduler's and the workers' business (``scheduler.py``, ``worker.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from stratum.errors import Conflict, InvalidRequest
from stratum.governance.tenancy import find_project
from stratum.jobs import kinds as job_kinds
from stratum.jobs import repo
from stratum.jobs.schemas import FINISHED, JOB_STATUSES, JobLogs, JobPublic, JobSubmit
from stratum.jobs.tables import JobRow
from stratum.storage import Database, utcnow

# Writes queueing a keyed job (submit, retry): one refused by the key's index whose holder finished
# before we could name it is tried once more (the key is free now); a second refusal with no holder
# is not the key's doing and is raised as it is.
_KEY_ATTEMPTS = 2
# A log read returns at most this much (the CLI and API page through bigger logs with the offset).
MAX_LOG_BYTES = 1024 * 1024


def job_dir(jobs_dir: Path, job_id: str) -> Path:
    """Where a job keeps its log, checkpoints and outputs: ``$STRATUM_HOME/jobs/<id>``."""
    return jobs_dir / job_id


def log_path(jobs_dir: Path, job_id: str) -> Path:
    return job_dir(jobs_dir, job_id) / "job.log"


class ExclusiveKeyHeld(Conflict):
    """Another queued or running job (``holder``) holds the exclusive key of the job being queued."""

    code = "exclusive_key_held"

    def __init__(self, key: str, holder: JobPublic) -> None:
        super().__init__(
            f"job {holder.id} ({holder.status}) holds exclusive key {key!r}; wait for it or cancel it",
            param="exclusive_key",
        )
        self.key = key
        self.holder = holder


class JobService:
    def __init__(
        self, db: Database, *, jobs_dir: Path, kinds: Mapping[str, job_kinds.JobKind] | None = None
    ) -> None:
        self._db = db
        self.jobs_dir = jobs_dir
        self.kinds = dict(job_kinds.BUILTIN_KINDS if kinds is None else kinds)

    def submit(self, spec: JobSubmit, *, project: str | None = None, actor: str = "system") -> JobPublic:
        """Validate ``spec.config`` with its kind and queue the job (in ``project``, ORG/PROJECT).

        ``ExclusiveKeyHeld`` (409) while another queued or running job holds the job's exclusive
        key: the kind's own key if it derives one, else ``spec.exclusive_key``."""
        config = job_kinds.validate(self.kinds, spec.kind, spec.config)
        key = job_kinds.exclusive_key(self.kinds, spec.kind, config) or spec.exclusive_key
        return self._keyed(key, lambda: self._insert(spec, config, key=key, project=project, actor=actor))

    def _keyed(self, key: str | None, write: Callable[[], JobPublic]) -> JobPublic:
        """Run ``write`` (one transaction putting a job with ``key`` in the queue); the store's
        refusal of a second holder becomes ``ExclusiveKeyHeld`` naming the first."""
        for attempt in range(_KEY_ATTEMPTS):
            try:
                return write()
            except IntegrityError:
                # The transaction rolled back: nothing of this write is left.
                holder = None if key is None else self._holder(key)
                if key is not None and holder is not None:
                    raise ExclusiveKeyHeld(key, holder) from None
                if key is None or attempt + 1 == _KEY_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _insert(
        self, spec: JobSubmit, config: dict[str, Any], *, key: str | None, project: str | None, actor: str
    ) -> JobPublic:
        job_id = secrets.token_hex(8)
        with self._db.session() as session:
            project_id = find_project(session, project)[1].id if project else None
            session.add(
                JobRow(
                    id=job_id,
                    project_id=project_id,
                    kind=spec.kind,
                    name=spec.name,
                    status="queued",
                    priority=spec.priority,
                    config=config,
                    cpu_threads=spec.resources.cpu_threads,
                    memory_mb=spec.resources.memory_mb,
                    gpus=spec.resources.gpus,
                    attempts=0,
                    max_attempts=spec.max_attempts,
                    cancel_requested=False,
                    progress={},
                    metrics={},
                    result={},
                    exclusive_key=key,
                    created_by=actor,
                    created_at=utcnow(),
                )
            )
            session.flush()
            return repo.get_public(session, job_id)

    def _holder(self, key: str) -> JobPublic | None:
        with self._db.session(write=False) as session:
            return repo.holder(session, key)

    def get(self, job_id: str) -> JobPublic:
        with self._db.session(write=False) as session:
            return repo.get_public(session, job_id)

    def list_jobs(
        self,
        *,
        project: str | None = None,
        project_id: str | None = None,
        org_id: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        config: Mapping[str, str] | None = None,
        limit: int = 100,
    ) -> list[JobPublic]:
        """Newest first, optionally of one project (path or id), org, status, kind or config values."""
        if status is not None and status not in JOB_STATUSES:
            raise InvalidRequest(
                f"status must be one of {', '.join(JOB_STATUSES)}, got {status!r}", param="status"
            )
        with self._db.session(write=False) as session:
            if project is not None:
                project_id = find_project(session, project)[1].id
            return repo.list_public(
                session,
                project_id=project_id,
                org_id=org_id,
                status=status,
                kind=kind,
                config=config,
                limit=limit,
            )

    def cancel(self, job_id: str) -> JobPublic:
        """A queued job is cancelled at once; a running one when its worker sees the request
        (within a second): the worker stops its process and marks it cancelled."""
        with self._db.session() as session:
            row = repo.locked(session, job_id)
            if row.status in FINISHED:
                raise Conflict(f"job {job_id} is already {row.status}", param="job_id")
            row.cancel_requested = True
            if row.status == "queued":
                row.status = "cancelled"
                row.finished_at = utcnow()
            session.flush()
            return repo.get_public(session, job_id)

    def retry(self, job_id: str) -> JobPublic:
        """Queue a failed or cancelled job again, with one more attempt allowed. A training job
        resumes from its last checkpoint (its directory is kept). ``ExclusiveKeyHeld`` (409, the job
        stays as it was) while another queued or running job holds the job's exclusive key."""
        key = self.get(job_id).exclusive_key  # set at submit, never changed
        return self._keyed(key, lambda: self._requeue(job_id))

    def _requeue(self, job_id: str) -> JobPublic:
        with self._db.session() as session:
            row = repo.locked(session, job_id)
            if row.status not in ("failed", "cancelled"):
                raise Conflict(
                    f"only failed or cancelled jobs can be retried; job {job_id} is {row.status}",
                    param="job_id",
                )
            row.status = "queued"
            row.cancel_requested = False
            row.worker_id = None
            row.lease_expires_at = None
            row.finished_at = None
            row.max_attempts = max(row.max_attempts, row.attempts + 1)
            session.flush()
            return repo.get_public(session, job_id)

    def logs(self, job_id: str, *, offset: int = 0, tail: int | None = None) -> JobLogs:
        """The job's log from byte ``offset`` (or its last ``tail`` lines), as UTF-8 text."""
        self.get(job_id)  # 404 for an unknown job, not an empty log
        path = log_path(self.jobs_dir, job_id)
        if not path.exists():
            return JobLogs(id=job_id, text="", offset=0)
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if tail is not None:
                start = max(0, size - MAX_LOG_BYTES)
                handle.seek(start)
                lines = handle.read().decode("utf-8", errors="replace").splitlines(keepends=True)
                return JobLogs(id=job_id, text="".join(lines[-tail:] if tail else []), offset=size)
            start = min(max(offset, 0), size)
            handle.seek(start)
            data = handle.read(MAX_LOG_BYTES)
        # Cut at the last complete line so a multi-byte character is never split across reads.
        if start + len(data) < size and b"\n" in data:
            data = data[: data.rindex(b"\n") + 1]
        return JobLogs(id=job_id, text=data.decode("utf-8", errors="replace"), offset=start + len(data))
