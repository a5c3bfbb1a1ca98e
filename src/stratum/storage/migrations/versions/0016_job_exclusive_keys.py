"""job exclusive keys: ``jobs.exclusive_key`` and a partial unique index over queued/running jobs.

At most one queued or running job holds a key (``kb_ingest:<kb id>``: one ingest per knowledge
base), enforced by the store so two racing submissions cannot both be queued. Existing
``kb_ingest`` jobs get their key: finished ones so that a retry is checked too, and of the
queued/running ones of a KB the oldest (an older race may have queued two: the later ones keep no
key rather than failing the upgrade, and still run).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_CLAUSE = "status IN ('queued', 'running')"

jobs = sa.table(
    "jobs",
    sa.column("id", sa.String(32)),
    sa.column("kind", sa.String(64)),
    sa.column("status", sa.String(16)),
    sa.column("config", json_type()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("exclusive_key", sa.String(255)),
)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("exclusive_key", sa.String(255), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(jobs.c.id, jobs.c.status, jobs.c.config)
        .where(jobs.c.kind == "kb_ingest")
        .order_by(jobs.c.created_at, jobs.c.id)
    ).all()
    held: set[str] = set()
    for job_id, status, config in rows:
        kb_id = config.get("kb_id") if isinstance(config, dict) else None
        if not isinstance(kb_id, str):
            continue
        key = f"kb_ingest:{kb_id}"
        if status in ("queued", "running"):
            if key in held:
                continue
            held.add(key)
        connection.execute(sa.update(jobs).where(jobs.c.id == job_id).values(exclusive_key=key))
    op.create_index(
        "ix_jobs_exclusive_key_active",
        "jobs",
        ["exclusive_key"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_CLAUSE),
        postgresql_where=sa.text(ACTIVE_CLAUSE),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_exclusive_key_active", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("exclusive_key")
