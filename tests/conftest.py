"""Fixtures shared by every test: isolated state, a fresh database per test on each backend, test Redis."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from stratum.governance.redis_counters import RedisCounterStore
from stratum.storage import Database

PG_URL_ENV = "STRATUM_TEST_PG_URL"
REDIS_URL_ENV = "STRATUM_TEST_REDIS_URL"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_environment(monkeypatch, tmp_path / "home")


def isolate_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point all user state at ``home`` and keep the developer's STRATUM_* settings out."""
    for name in list(os.environ):
        if name.startswith("STRATUM_") and not name.startswith("STRATUM_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STRATUM_HOME", str(home))
    # Nothing in the suite may reach the Hugging Face Hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def pg_test_url() -> str:
    """The throwaway PostgreSQL cluster's URL; skips the test when it is not running."""
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set; run: export {PG_URL_ENV}=$(bash scripts/pg-test.sh start)")
    return url


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[Database]:
    """A database with no tables, on SQLite (a temp file) or PostgreSQL (a fresh schema)."""
    if backend == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'db' / 'stratum.db'}")
        yield database
        database.dispose()
        return

    url = pg_test_url()
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


class MigratedTemplates:
    """Each backend migrated once per session; a test's ``db`` starts as a copy of it.

    Running the Alembic revisions costs ~0.3 s per test and backend (~480 tests use ``db``); a copy
    costs milliseconds (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL). The
    migrations themselves still run from scratch in tests/storage/test_migrations.py (``empty_db``).
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._sqlite: Path | None = None
        self._pg_template: str | None = None
        self._pg_admin: Engine | None = None

    def sqlite_copy(self, target: Path) -> Database:
        if self._sqlite is None:
            template = self._root / "sqlite-template" / "stratum.db"
            database = Database(f"sqlite:///{template}")
            database.migrate()
            database.dispose()  # the last connection's close checkpoints the WAL into the file
            self._sqlite = template
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._sqlite, target)
        return Database(f"sqlite:///{target}")

    def postgres_copy(self, url: str) -> tuple[Database, str]:
        if self._pg_admin is None:
            self._pg_admin = create_engine(
                make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
            )
        if self._pg_template is None:
            name = f"tmpl_{uuid.uuid4().hex[:12]}"
            with self._pg_admin.connect() as connection:
                connection.execute(text(f"CREATE DATABASE {name}"))
            database = Database(make_url(url).set(database=name).render_as_string(hide_password=False))
            database.migrate()
            database.dispose()  # CREATE DATABASE ... TEMPLATE needs the template without sessions
            self._pg_template = name
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self._pg_admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name} TEMPLATE {self._pg_template}"))
        return Database(make_url(url).set(database=name).render_as_string(hide_password=False)), name

    def drop_postgres(self, name: str) -> None:
        assert self._pg_admin is not None
        with self._pg_admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def close(self) -> None:
        if self._pg_admin is not None:
            if self._pg_template is not None:
                self.drop_postgres(self._pg_template)
            self._pg_admin.dispose()


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("migrated"))
    yield templates
    templates.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: MigratedTemplates
) -> Iterator[Database]:
    """A freshly migrated database (a copy of the session's migrated template), on each backend."""
    if request.param == "sqlite":
        database = migrated_templates.sqlite_copy(tmp_path / "db" / "stratum.db")
        yield database
        database.dispose()
        return
    database, name = migrated_templates.postgres_copy(pg_test_url())
    try:
        yield database
    finally:
        database.dispose()
        migrated_templates.drop_postgres(name)


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A STRATUM_HOME holding the demo model built by the shipped recipe, once per session.

    The build costs ~25 s of CPU: tests/engine/test_demo.py checks what it answers, and the e2e demo
    server starts on a copy (its start-up then takes the cached-build path). Building from scratch
    on start-up is tested in test_demo.py with a baby recipe (cache, rebuild, lock, progress).
    """
    # Imported here: the demo's training code is only needed by the two tests that use it.
    from stratum.engine.demo import ensure_demo_model

    home = tmp_path_factory.mktemp("demo-home")
    ensure_demo_model(home)
    return home


T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def race(count: int, attempt: Callable[[], T], refused: type[E]) -> tuple[list[T], list[E]]:
    """Run ``attempt`` on ``count`` threads at once: what succeeded, and the ``refused`` errors.

    Any other exception fails the calling test (raised here, after every thread joined).
    """
    done: list[T] = []
    errors: list[E] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            done.append(attempt())
        except refused as error:
            errors.append(error)
        except BaseException as error:  # anything else fails the test below
            failures.append(error)

    workers = [threading.Thread(target=run) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert failures == []
    return done, errors
