"""text-to-SQL database connections: ``sql_databases``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sql_databases",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("dialect", sa.String(16), nullable=False),
        sa.Column("url_encrypted", sa.Text(), nullable=False),
        sa.Column("url_display", sa.String(300), nullable=False),
        sa.Column("model", sa.String(160), nullable=False),
        sa.Column("description", sa.String(1000), nullable=True),
        sa.Column("tables", json_type(), nullable=False),
        sa.Column("row_filters", json_type(), nullable=False),
        sa.Column("descriptions", json_type(), nullable=False),
        sa.Column("max_rows", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_sql_databases_project_id_projects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_sql_databases"),
        sa.UniqueConstraint("project_id", "name", name="uq_sql_databases_project_id_name"),
    )
    op.create_index("ix_sql_databases_project_id", "sql_databases", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_sql_databases_project_id", table_name="sql_databases")
    op.drop_table("sql_databases")
