"""scheduled re-evaluation of production aliases.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eval_schedules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("suite_path", sa.Text(), nullable=True),
        sa.Column("dataset_ref", sa.String(200), nullable=True),
        sa.Column("split", sa.String(32), nullable=True),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("max_drop", sa.Float(), nullable=False),
        sa.Column("every_s", sa.Integer(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("flag_reason", sa.Text(), nullable=True),
        sa.Column("backflow_dataset", sa.String(200), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["last_run_id"],
            ["eval_runs.id"],
            name="fk_eval_schedules_last_run_id_eval_runs",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_eval_schedules"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("eval_schedules")
