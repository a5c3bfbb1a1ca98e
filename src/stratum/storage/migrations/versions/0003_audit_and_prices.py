"""audit log and price table: hash-chained ``audit_log``, ``model_prices``, ``usage_records.cost``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

- ``audit_log.id`` is assigned by the writer (previous id + 1) under a lock, not by a sequence, so
  the chain has no gaps unless a row was deleted.
- ``usage_records.cost`` is nullable: records written before this revision (or for a model without
  a price) have no cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=True),
        sa.Column("project_id", sa.String(32), nullable=True),
        sa.Column("detail", json_type(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])
    op.create_index("ix_audit_log_org_id", "audit_log", ["org_id"])
    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(160), nullable=False),
        sa.Column("input_per_1k", sa.Numeric(18, 6), nullable=False),
        sa.Column("output_per_1k", sa.Numeric(18, 6), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_model_prices"),
    )
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cost", sa.Numeric(18, 6), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("cost")
    op.drop_table("model_prices")
    op.drop_table("audit_log")
