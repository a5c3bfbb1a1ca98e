"""registry and keys: models, versions, aliases with history, API keys.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Design notes for the revisions that follow:
- Enumerations (kind, source, variant, role) are checked by the services, not by CHECK constraints:
  adding a value to a CHECK on SQLite means rebuilding the table.
- ``model_versions.variant`` + ``base_version_id`` already model LoRA adapters / merged / quantized
  builds of a base version; lineage edges and deployments get their own tables later.
- ``models.last_version`` makes version numbers monotonic: a removed ``demo@3`` is never reissued, so
  refs recorded in alias history and logs keep meaning one artifact.
- Alias history keeps version numbers as well as ids, so it still answers "what served X:prod at T"
  after a version is removed (the id is then NULL).
- ``api_keys`` gets nullable ``org_id``/``project_id`` in the revision that adds orgs/projects.
- Constraint names follow ``stratum.storage.db.NAMING_CONVENTION`` so later revisions can address them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stratum.storage.migration_types import json_type

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp() -> sa.DateTime:
    # Aware UTC instants; stratum.storage.db.UTCDateTime normalises what SQLite reads back.
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("default_alias", sa.String(64), nullable=False, server_default="latest"),
        sa.Column("last_version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
        # Ids are never reused, so history and lineage rows can't point at a different model later.
        sqlite_autoincrement=True,
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("variant", sa.String(16), nullable=False, server_default="full"),
        sa.Column("base_version_id", sa.Integer(), nullable=True),
        sa.Column("artifact_uri", sa.Text(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("upstream_url", sa.Text(), nullable=True),
        sa.Column("upstream_model", sa.String(255), nullable=True),
        sa.Column("api_key_env", sa.String(128), nullable=True),
        sa.Column("metadata", json_type(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_versions_model_id_models", ondelete="CASCADE"
        ),
        # No ON DELETE: removing a base that adapters still point at must fail.
        sa.ForeignKeyConstraint(
            ["base_version_id"],
            ["model_versions.id"],
            name="fk_model_versions_base_version_id_model_versions",
        ),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_model_versions_base_version_id", "model_versions", ["base_version_id"])
    op.create_table(
        "model_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_aliases_model_id_models", ondelete="CASCADE"
        ),
        # No ON DELETE: a version an alias serves cannot vanish from under it.
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_model_aliases_version_id_model_versions"
        ),
        sa.UniqueConstraint("model_id", "alias", name="uq_model_aliases_model_id_alias"),
    )
    op.create_index("ix_model_aliases_version_id", "model_aliases", ["version_id"])
    op.create_table(
        "model_alias_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("from_version_id", sa.Integer(), nullable=True),
        sa.Column("to_version_id", sa.Integer(), nullable=True),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_alias_events"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_alias_events_model_id_models", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["from_version_id"],
            ["model_versions.id"],
            name="fk_model_alias_events_from_version_id_model_versions",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["to_version_id"],
            ["model_versions.id"],
            name="fk_model_alias_events_to_version_id_model_versions",
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        "ix_model_alias_events_model_id_alias_at", "model_alias_events", ["model_id", "alias", "at"]
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("expires_at", _timestamp(), nullable=True),
        sa.Column("revoked_at", _timestamp(), nullable=True),
        sa.Column("last_used_at", _timestamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
    )
    # Not unique: an operator-configured key may share its first characters with another key.
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("model_alias_events")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("models")
