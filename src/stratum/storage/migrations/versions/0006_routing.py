"""routing: ``routes``, ``responder_rules``, ``handoff_tickets``.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routes",
        sa.Column("model", sa.String(160), nullable=False),
        sa.Column("backends", json_type(), nullable=False),
        sa.Column("fallback", json_type(), nullable=False),
        sa.Column("triggers", json_type(), nullable=False),
        sa.Column("burst_queue", sa.Integer(), nullable=True),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_routes"),
    )
    op.create_table(
        "responder_rules",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("intent", sa.String(64), nullable=True),
        sa.Column("keywords", json_type(), nullable=False),
        sa.Column("match", sa.String(8), nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("models", json_type(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_responder_rules"),
    )
    op.create_table(
        "handoff_tickets",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(160), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=True),
        sa.Column("project_id", sa.String(32), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("messages", json_type(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_handoff_tickets"),
    )
    op.create_index("ix_handoff_tickets_project_id", "handoff_tickets", ["project_id"])
    op.create_index("ix_handoff_tickets_status", "handoff_tickets", ["status"])


def downgrade() -> None:
    op.drop_table("handoff_tickets")
    op.drop_table("responder_rules")
    op.drop_table("routes")
