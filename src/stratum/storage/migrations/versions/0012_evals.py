"""evaluation runs, per-item scores and release-gate decisions.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eval_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_ref", sa.String(200), nullable=False),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("suite_kind", sa.String(32), nullable=False),
        sa.Column("suite_digest", sa.String(32), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("metrics", json_type(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_eval_runs"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_eval_runs_model_ref_suite_digest", "eval_runs", ["model_ref", "suite_digest"])
    op.create_table(
        "eval_items",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("scores", json_type(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["eval_runs.id"], name="fk_eval_items_run_id_eval_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "item_id", name="pk_eval_items"),
    )
    op.create_table(
        "eval_gates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("candidate_ref", sa.String(200), nullable=False),
        sa.Column("baseline_ref", sa.String(200), nullable=False),
        sa.Column("candidate_run_id", sa.Integer(), nullable=False),
        sa.Column("baseline_run_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", json_type(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_run_id"],
            ["eval_runs.id"],
            name="fk_eval_gates_candidate_run_id_eval_runs",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["baseline_run_id"],
            ["eval_runs.id"],
            name="fk_eval_gates_baseline_run_id_eval_runs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_eval_gates"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_eval_gates_candidate_ref", "eval_gates", ["candidate_ref"])


def downgrade() -> None:
    op.drop_table("eval_gates")
    op.drop_table("eval_items")
    op.drop_table("eval_runs")
