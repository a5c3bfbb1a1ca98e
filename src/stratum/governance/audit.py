"""The audit log: an append-only, hash-chained record of admin actions and inference requests.

``append`` is called by the other governance services inside the transaction of the change it
records, so a change and its audit entry commit (or roll back) together. Appends are serialised
(PostgreSQL: an advisory lock; SQLite: the write transaction's database lock) so the chain stays
linear under concurrency. ``verify`` recomputes every hash and names the first entry that does not
match, was inserted out of sequence, or follows a deleted one.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from stratum.errors import Conflict
from stratum.governance.schemas import AuditEntry, AuditPrune, AuditVerification
from stratum.governance.tables import AuditCheckpointRow, AuditRow
from stratum.storage import Database, advisory_lock, utcnow

GENESIS_HASH = "0" * 64
# Actor of changes made without an API key (the CLI on the server's own database).
LOCAL_ACTOR = "local"
_LOCK = "governance.audit"
# Rows read per round trip when verifying (keeps memory flat on long chains).
_VERIFY_BATCH = 1000


def _plain(value: Any) -> Any:
    """Detail values as JSON-safe scalars (Decimal budgets become strings, so they hash exactly)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def entry_hash(row: AuditRow) -> str:
    """sha256 over the entry's canonical JSON (sorted keys, no spaces, UTF-8), ``prev_hash`` included."""
    document = {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "org_id": row.org_id,
        "project_id": row.project_id,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    org_id: str | None = None,
    project_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditRow:
    """Add one entry to the chain inside the caller's (write) transaction."""
    advisory_lock(session, _LOCK)
    last = session.execute(select(AuditRow.id, AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)).first()
    # The database keeps microseconds on both dialects, so the stored instant hashes the same on read.
    row = AuditRow(
        id=(last[0] + 1) if last else 1,
        at=utcnow(),
        actor=actor[:64],
        action=action[:64],
        target=target[:200],
        org_id=org_id,
        project_id=project_id,
        detail=_plain(detail or {}),
        prev_hash=last[1] if last else GENESIS_HASH,
    )
    row.hash = entry_hash(row)
    session.add(row)
    session.flush()
    return row


def _public(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        org_id=row.org_id,
        project_id=row.project_id,
        detail=row.detail,
        hash=row.hash,
    )


class AuditService:
    """Serves: ``stratum audit verify|list`` and ``GET /admin/v1/audit`` (writers use ``append``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def verify(self) -> AuditVerification:
        """Walk the chain from the genesis, or from the latest prune checkpoint."""
        with self._db.session(write=False) as session:
            return self._verify(session)

    def _verify(self, session: Session, *, through_id: int | None = None) -> AuditVerification:
        previous_id, previous_hash, count = 0, GENESIS_HASH, 0
        checkpoint = _latest_checkpoint(session)
        attested = True
        if checkpoint is not None:
            previous_id, previous_hash = checkpoint.through_id, checkpoint.through_hash
            attested = False
        while True:
            batch = (
                session.execute(
                    select(AuditRow)
                    .where(AuditRow.id > previous_id)
                    .order_by(AuditRow.id)
                    .limit(_VERIFY_BATCH)
                )
                .scalars()
                .all()
            )
            if not batch:
                if not attested:
                    assert checkpoint is not None
                    return AuditVerification(
                        ok=False,
                        count=count,
                        broken_id=checkpoint.through_id,
                        reason="the prune checkpoint is not attested by an audit.prune entry",
                    )
                return AuditVerification(ok=True, count=count, checkpoint_id=_through(checkpoint))
            for row in batch:
                if through_id is not None and row.id > through_id:
                    return AuditVerification(ok=True, count=count, checkpoint_id=_through(checkpoint))
                reason = None
                if row.id != previous_id + 1:
                    reason = f"entry {previous_id + 1} is missing (next is {row.id})"
                elif row.prev_hash != previous_hash:
                    reason = "prev_hash does not match the previous entry's hash"
                elif row.hash != entry_hash(row):
                    reason = "hash does not match the entry's content"
                if reason is not None:
                    return AuditVerification(ok=False, count=count, broken_id=row.id, reason=reason)
                if (
                    checkpoint is not None
                    and row.action == "audit.prune"
                    and row.detail.get("through_id") == checkpoint.through_id
                    and row.detail.get("through_hash") == checkpoint.through_hash
                ):
                    attested = True
                previous_id, previous_hash, count = row.id, row.hash, count + 1
            session.expunge_all()

    def list_entries(
        self,
        *,
        since: datetime | None = None,
        actor: str | None = None,
        org_id: str | None = None,
        project_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first, at most ``limit``; ``org_id``/``project_id`` scope a tenant's view."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        if actor is not None:
            query = query.where(AuditRow.actor == actor)
        if org_id is not None:
            query = query.where(AuditRow.org_id == org_id)
        if project_id is not None:
            query = query.where(AuditRow.project_id == project_id)
        with self._db.session(write=False) as session:
            return [_public(row) for row in session.execute(query).scalars()]

    def prune(self, *, before: datetime, actor: str = LOCAL_ACTOR) -> AuditPrune:
        """Delete entries older than ``before``, keeping the chain verifiable.

        The entries to delete are verified first (pruning must not destroy the evidence of a
        break). An ``audit.prune`` entry naming the last deleted entry's id and hash is appended,
        a checkpoint with the same id and hash is stored, then the old rows go, all in one
        transaction; ``verify`` continues from the checkpoint and checks the prune entry attests it.
        """
        if before.tzinfo is None:
            raise ValueError("before must be timezone-aware")
        with self._db.session() as session:
            advisory_lock(session, _LOCK)
            last = session.execute(
                select(AuditRow.id, AuditRow.hash)
                .where(AuditRow.at < before)
                .order_by(AuditRow.id.desc())
                .limit(1)
            ).first()
            if last is None:
                return AuditPrune(pruned=0, through_id=None, before=before)
            through_id, through_hash = int(last[0]), str(last[1])
            checked = self._verify(session, through_id=through_id)
            if not checked.ok:
                raise Conflict(
                    f"the audit chain is broken at entry {checked.broken_id} ({checked.reason}); "
                    "not pruning the evidence",
                    param="before",
                )
            count = int(session.scalar(select(func.count()).where(AuditRow.id <= through_id)) or 0)
            append(
                session,
                actor=actor,
                action="audit.prune",
                target="audit_log",
                detail={"through_id": through_id, "through_hash": through_hash, "pruned": count},
            )
            session.add(
                AuditCheckpointRow(
                    at=utcnow(), through_id=through_id, through_hash=through_hash, pruned=count
                )
            )
            session.execute(delete(AuditRow).where(AuditRow.id <= through_id))
            return AuditPrune(pruned=count, through_id=through_id, before=before)


def _latest_checkpoint(session: Session) -> AuditCheckpointRow | None:
    return session.execute(
        select(AuditCheckpointRow).order_by(AuditCheckpointRow.through_id.desc()).limit(1)
    ).scalar_one_or_none()


def _through(checkpoint: AuditCheckpointRow | None) -> int | None:
    return checkpoint.through_id if checkpoint is not None else None
