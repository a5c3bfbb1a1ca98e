"""Fixtures shared by every test: isolated state, a fresh database per test on each backend, test Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from stratum.governance.redis_counters import RedisCounterStore
from stratum.storage import Database

PG_URL_ENV = "STRATUM_TEST_PG_URL"
REDIS_URL_ENV = "STRATUM_TEST_REDIS_URL"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point all user state at a temp dir and keep the developer's STRATUM_* settings out."""
    for name in list(os.environ):
        if name.startswith("STRATUM_") and not name.startswith("STRATUM_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STRATUM_HOME", str(tmp_path / "home"))
    # Nothing in the suite may reach the Hugging Face Hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A database with no tables, on SQLite (a temp file) or PostgreSQL (a fresh schema)."""
    if backend == "sqlite":
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


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A database with no tables, on SQLite (a temp file) or PostgreSQL (a fresh schema)."""
    with fresh_database(request.param, tmp_path) as database:
        yield database


def redis_test_url() -> str:
    """The throwaway test Redis (``scripts/redis-test.sh``), or a skip saying how to start one."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        pytest.skip(
            f"{REDIS_URL_ENV} is not set; run: export {REDIS_URL_ENV}=$(bash scripts/redis-test.sh start)"
        )
    return url


@pytest.fixture
def redis_counters() -> Iterator[RedisCounterStore]:
    """Redis counters under a prefix of their own, deleted afterwards (the test Redis is shared)."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    store = RedisCounterStore(redis_test_url(), prefix=prefix)
    try:
        yield store
    finally:
        client = redis.Redis.from_url(redis_test_url())
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
        store.close()


@pytest.fixture
def db(empty_db: Database) -> Database:
    """A freshly migrated database."""
    empty_db.migrate()
    return empty_db
