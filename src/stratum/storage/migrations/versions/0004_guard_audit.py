"""content guard policies and audit retention: ``guard_policies``, ``audit_checkpoints``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

- ``guard_policies.scope`` is a project id or ``default``; no foreign key, so the default row
  needs no project (a policy left by a removed project is never read again).
- ``audit_checkpoints`` keeps the id and hash of the last pruned audit entry so ``verify`` can start
  there after old rows are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guard_policies",
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("policy", json_type(), nullable=False),
        sa.Column("words", json_type(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_guard_policies"),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("through_id", sa.BigInteger(), nullable=False),
        sa.Column("through_hash", sa.String(64), nullable=False),
        sa.Column("pruned", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoints"),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_table("guard_policies")
