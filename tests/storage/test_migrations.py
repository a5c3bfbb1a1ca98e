"""Migrations: upgrade from empty, downgrade, and agreement with the ORM tables."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import stratum
from stratum.storage import Base, Database
from stratum.storage.db import MIGRATIONS_DIR


def _import_every_tables_module() -> list[str]:
    """Register every domain's tables on ``Base.metadata`` (a new domain is covered unasked)."""
    names = [
        module.name
        for module in pkgutil.walk_packages(stratum.__path__, "stratum.")
        if module.name.rsplit(".", 1)[-1] == "tables"
    ]
    for name in names:
        importlib.import_module(name)
    return names


TABLE_MODULES = _import_every_tables_module()

TABLES = {
    "models",
    "model_versions",
    "model_aliases",
    "model_alias_events",
    "audit_log",
    "model_prices",
    "api_keys",
    "orgs",
    "projects",
    "policy_rules",
    "quota_counters",
    "usage_records",
    "guard_policies",
    "audit_checkpoints",
    "datasets",
    "dataset_versions",
    "dataset_review_items",
    "lineage_edges",
    "served_responses",
    "feedback",
    "deployments",
    "deployment_events",
    "kb_bases",
    "kb_documents",
    "kb_chunks",
    "jobs",
    "routes",
    "responder_rules",
    "handoff_tickets",
    "sql_databases",
}


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def test_revisions_are_linear_and_named() -> None:
    scripts = ScriptDirectory.from_config(_config())
    assert len(scripts.get_heads()) == 1
    for revision in scripts.walk_revisions():
        assert not isinstance(revision.down_revision, tuple)  # no merge points
        stem = Path(str(revision.module.__file__)).stem
        assert stem.startswith(f"{revision.revision}_") and len(stem) > len(revision.revision) + 1


def test_migrate_from_empty(empty_db: Database) -> None:
    assert TABLES.isdisjoint(inspect(empty_db.engine).get_table_names())
    empty_db.migrate()
    assert set(inspect(empty_db.engine).get_table_names()) >= TABLES
    with empty_db.session(write=False) as session:
        head = ScriptDirectory.from_config(_config()).get_current_head()
        assert session.scalar(text("SELECT version_num FROM alembic_version")) == head


def test_migrate_twice_is_a_no_op(db: Database) -> None:
    db.migrate()
    with db.session(write=False) as session:
        assert session.scalar(text("SELECT count(*) FROM alembic_version")) == 1


def test_downgrade_to_base_and_up_again(db: Database) -> None:
    config = _config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert TABLES.isdisjoint(inspect(db.engine).get_table_names())
    db.migrate()
    assert set(inspect(db.engine).get_table_names()) >= TABLES


def test_orm_tables_match_the_migrations(db: Database) -> None:
    assert {"stratum.registry.tables", "stratum.governance.tables"} <= set(TABLE_MODULES)
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
