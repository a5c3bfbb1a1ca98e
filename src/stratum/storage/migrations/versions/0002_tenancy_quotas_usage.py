"""tenancy, policies, quotas, usage: orgs, projects, scoped keys, policy rules, counters, usage records.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-30

- ``api_keys`` gains nullable ``org_id``/``project_id``: keys made before this revision stay platform
  keys (no tenant) and keep working unchanged.
- Limits (rpm, tpm, token_budget) are nullable columns on orgs, projects and keys: NULL = unlimited.
- ``quota_counters`` holds the store-backed counters (one row per scope, metric and window);
  ``expires_at`` lets a background task delete finished windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _limits() -> list[sa.Column[Any]]:
    return [
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("token_budget", sa.BigInteger(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        *_limits(),
        sa.PrimaryKeyConstraint("id", name="pk_orgs"),
        sa.UniqueConstraint("name", name="uq_orgs_name"),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("cost_budget", sa.Numeric(18, 6), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        *_limits(),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_projects_org_id_orgs", ondelete="CASCADE"),
        sa.UniqueConstraint("org_id", "name", name="uq_projects_org_id_name"),
    )
    op.create_index("ix_projects_org_id", "projects", ["org_id"])
    with op.batch_alter_table("api_keys") as batch:
        for column in _limits():
            batch.add_column(column)
        batch.add_column(sa.Column("org_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("project_id", sa.String(32), nullable=True))
        for name in ("models", "endpoints", "ip_allow"):
            batch.add_column(sa.Column(name, json_type(), nullable=False, server_default=sa.text("'[]'")))
        batch.create_foreign_key("fk_api_keys_org_id_orgs", "orgs", ["org_id"], ["id"], ondelete="CASCADE")
        batch.create_foreign_key(
            "fk_api_keys_project_id_projects", "projects", ["project_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_api_keys_org_id", ["org_id"])
        batch.create_index("ix_api_keys_project_id", ["project_id"])
    op.create_table(
        "policy_rules",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("effect", sa.String(8), nullable=False),
        sa.Column("spec", json_type(), nullable=False),
        sa.Column("description", sa.String(512), nullable=True),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_policy_rules"),
        sa.UniqueConstraint("name", name="uq_policy_rules_name"),
    )
    op.create_table(
        "quota_counters",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_quota_counters"),
    )
    op.create_index("ix_quota_counters_expires_at", "quota_counters", ["expires_at"])
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("org_id", sa.String(32), nullable=True),
        sa.Column("project_id", sa.String(32), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(160), nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
    )
    op.create_index("ix_usage_records_at", "usage_records", ["at"])
    op.create_index("ix_usage_records_org_id", "usage_records", ["org_id"])
    op.create_index("ix_usage_records_key_id", "usage_records", ["key_id"])
    op.create_index("ix_usage_records_project_id_at", "usage_records", ["project_id", "at"])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("quota_counters")
    op.drop_table("policy_rules")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_project_id")
        batch.drop_index("ix_api_keys_org_id")
        batch.drop_constraint("fk_api_keys_project_id_projects", type_="foreignkey")
        batch.drop_constraint("fk_api_keys_org_id_orgs", type_="foreignkey")
        for name in ("ip_allow", "endpoints", "models", "project_id", "org_id", "token_budget", "tpm", "rpm"):
            batch.drop_column(name)
    op.drop_table("projects")
    op.drop_table("orgs")
