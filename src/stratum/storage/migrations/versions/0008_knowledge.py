"""knowledge bases: ``kb_bases``, ``kb_documents``, ``kb_chunks``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

Chunks keep their vector (float32 bytes) and lexical tokens in the row: the ANN and BM25 indexes
are caches rebuilt from the store, so a KB is exported, imported or recovered from the rows alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kb_bases",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("project_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(512), nullable=True),
        sa.Column("settings", json_type(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_kb_bases_project_id_projects", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kb_bases"),
        sa.UniqueConstraint("project_id", "name", name="uq_kb_bases_project_id_name"),
    )
    op.create_index("ix_kb_bases_project_id", "kb_bases", ["project_id"])
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kb_id", sa.String(32), nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("tags", json_type(), nullable=False),
        sa.Column("doc_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["kb_id"], ["kb_bases.id"], name="fk_kb_documents_kb_id_kb_bases", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kb_documents"),
        sa.UniqueConstraint("kb_id", "source", name="uq_kb_documents_kb_id_source"),
    )
    op.create_index("ix_kb_documents_kb_id", "kb_documents", ["kb_id"])
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kb_id", sa.String(32), nullable=False),
        sa.Column("document_id", sa.String(32), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("heading_path", json_type(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["kb_id"], ["kb_bases.id"], name="fk_kb_chunks_kb_id_kb_bases", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["kb_documents.id"],
            name="fk_kb_chunks_document_id_kb_documents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_kb_chunks"),
        sa.UniqueConstraint("document_id", "ordinal", name="uq_kb_chunks_document_id_ordinal"),
    )
    op.create_index("ix_kb_chunks_kb_id", "kb_chunks", ["kb_id"])
    op.create_index("ix_kb_chunks_document_id", "kb_chunks", ["document_id"])


def downgrade() -> None:
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
    op.drop_table("kb_bases")
