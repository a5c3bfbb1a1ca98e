"""Migrations: upgrade from empty, downgrade, and agreement with the ORM tables."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

import stratum
from stratum.jobs import JobService, JobSubmit
from stratum.jobs.service import ExclusiveKeyHeld
from stratum.jobs.tables import JobRow
from stratum.storage import Base, Database, utcnow
from stratum.storage.db import MIGRATIONS_DIR, JSONDocument, UTCDateTime


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


def test_0016_gives_existing_jobs_exclusive_keys(empty_db: Database) -> None:
    """Upgrading a store with jobs in it: kb_ingest jobs get their KB's key (of two queued/running
    ingests of one KB, left by an older race, the oldest), then the partial unique index holds."""
    empty_db.migrate("0015")
    jobs = sa.table(
        "jobs",
        *(sa.column(name) for name in ("id", "kind", "status", "priority", "cpu_threads", "memory_mb")),
        *(sa.column(name) for name in ("gpus", "attempts", "max_attempts", "cancel_requested")),
        *(sa.column(name, JSONDocument) for name in ("config", "progress", "metrics", "result")),
        sa.column("created_by"),
        sa.column("created_at", UTCDateTime()),
    )
    start = utcnow()
    rows = [  # id, kind, status, config
        ("older", "kb_ingest", "running", {"kb_id": "kb甲", "urls": ["https://a.cn/"]}),
        ("raced", "kb_ingest", "queued", {"kb_id": "kb甲", "urls": ["https://a.cn/"]}),
        ("failed", "kb_ingest", "failed", {"kb_id": "kb乙", "urls": ["https://b.cn/"]}),
        ("other", "kb_ingest", "queued", {"kb_id": "kb乙", "urls": ["https://b.cn/"]}),
        ("sleep", "sleep", "queued", {"seconds": 1}),
    ]
    with empty_db.engine.begin() as connection:
        for n, (job_id, kind, status, config) in enumerate(rows):
            connection.execute(
                sa.insert(jobs).values(
                    id=job_id,
                    kind=kind,
                    status=status,
                    config=config,
                    priority=0,
                    cpu_threads=1,
                    memory_mb=1024,
                    gpus=0,
                    attempts=0,
                    max_attempts=2,
                    cancel_requested=False,
                    progress={},
                    metrics={},
                    result={},
                    created_by="system",
                    created_at=start + timedelta(seconds=n),
                )
            )
    empty_db.migrate()

    with empty_db.session(write=False) as session:
        keys = {job_id: key for job_id, key in session.execute(select(JobRow.id, JobRow.exclusive_key))}
    assert keys == {
        "older": "kb_ingest:kb甲",
        "raced": None,  # still runs; no new ingest of kb甲 until "older" is done
        "failed": "kb_ingest:kb乙",
        "other": "kb_ingest:kb乙",
        "sleep": None,
    }
    service = JobService(empty_db, jobs_dir=Path("unused"))
    with pytest.raises(ExclusiveKeyHeld, match="older"):
        service.submit(JobSubmit(kind="sleep", exclusive_key="kb_ingest:kb甲"))
    with pytest.raises(ExclusiveKeyHeld, match="other"):
        service.retry("failed")
    assert service.get("failed").status == "failed"
    service.cancel("other")
    assert service.retry("failed").status == "queued"
