"""Fixtures shared by every test: isolated state, and a fresh database per test on each backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from stratum.storage import Database

PG_URL_ENV = "STRATUM_TEST_PG_URL"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point all user state at a temp dir and keep the developer's STRATUM_* settings out."""
    for name in list(os.environ):
        if name.startswith("STRATUM_") and not name.startswith("STRATUM_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STRATUM_HOME", str(tmp_path / "home"))
    # Nothing in the suite may reach the Hugging Face Hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with no tables, on SQLite (a temp file) or PostgreSQL (a fresh schema)."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'db' / 'stratum.db'}")
        yield database
        database.dispose()
        return

    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set; run: export {PG_URL_ENV}=$(bash scripts/pg-test.sh start)")
    # One schema per test, selected through search_path: much faster than a database per test, and
    # Alembic's version table lands in it too.
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    database = Database(scoped.render_as_string(hide_password=False))
    try:
        yield database
    finally:
        database.dispose()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def db(empty_db: Database) -> Database:
    """A freshly migrated database."""
    empty_db.migrate()
    return empty_db
