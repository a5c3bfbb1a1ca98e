"""lineage, feedback and deployments: ``lineage_edges``, ``served_responses``, ``feedback``,
``deployments``, ``deployment_events``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

- Lineage nodes are (kind, id) text pairs, not foreign keys: most kinds live in other domains and
  an edge must outlive the object it names.
- ``served_responses`` is written in batches by the gateway (one row per response); feedback finds
  the serving version there, deployment controllers read per-version outcomes from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "lineage_edges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=False),
        sa.Column("relation", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("metadata", json_type(), server_default="{}", nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_edges"),
        sa.UniqueConstraint(
            "source_kind", "source_id", "target_kind", "target_id", "relation", name="uq_lineage_edges_edge"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_lineage_edges_target_kind_target_id", "lineage_edges", ["target_kind", "target_id"])
    op.create_table(
        "served_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(160), nullable=False),
        sa.Column("version_ref", sa.String(160), nullable=False),
        sa.Column("deployment", sa.String(128), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("org_id", sa.String(32), nullable=True),
        sa.Column("project_id", sa.String(32), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        _at("at"),
        sa.PrimaryKeyConstraint("id", name="pk_served_responses"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_served_responses_response_id", "served_responses", ["response_id"], unique=True)
    op.create_index("ix_served_responses_deployment_at", "served_responses", ["deployment", "at"])
    op.create_index("ix_served_responses_at", "served_responses", ["at"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("response_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(160), nullable=False),
        sa.Column("version_ref", sa.String(160), nullable=False),
        sa.Column("deployment", sa.String(128), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("thumbs", sa.String(4), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("org_id", sa.String(32), nullable=True),
        sa.Column("project_id", sa.String(32), nullable=True),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_version_ref_created_at", "feedback", ["version_ref", "created_at"])
    op.create_index("ix_feedback_response_id", "feedback", ["response_id"])
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stable_ref", sa.String(160), nullable=False),
        sa.Column("candidate_ref", sa.String(160), nullable=True),
        sa.Column("weights", json_type(), nullable=False),
        sa.Column("steps", json_type(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.Column("thresholds", json_type(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _at("started_at"),
        _at("step_started_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_deployments"),
    )
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("weights", json_type(), nullable=False),
        sa.Column("detail", json_type(), nullable=False),
        _at("at"),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_deployment_events_deployment_id", "deployment_events", ["deployment", "id"])


def downgrade() -> None:
    op.drop_table("deployment_events")
    op.drop_table("deployments")
    op.drop_table("feedback")
    op.drop_table("served_responses")
    op.drop_table("lineage_edges")
