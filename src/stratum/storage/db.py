"""One database per process: a SQLAlchemy engine, transactions, and the migrations shipped in the package.

SQLite (a file under ``STRATUM_HOME``) is the default; PostgreSQL is chosen by a
``postgresql+psycopg://`` URL. Everything that differs between the two dialects lives in this module,
so domain code (``registry``, ``governance``, …) only ever sees ``Database.session()``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, DateTime, Dialect, MetaData, String, create_engine, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

if TYPE_CHECKING:
    from stratum.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
POSTGRES_INSTALL_HINT = "pip install 'stratum[postgres]'"

# A writer waits this long for another writer's lock before SQLite gives up with "database is locked".
# Writes here are short (a few rows), so 30 s only ever elapses when something is truly stuck.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option marking the engine used by read-only sessions (see ``Database.session``).
_READ_ONLY = "stratum_read_only"

# Deterministic constraint names, so later revisions can drop/alter constraints by name on both
# dialects (SQLite batch mode needs names to find them).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC: the only kind of datetime we store."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that always reads back as an aware UTC datetime.

    PostgreSQL stores the instant and returns it in the session time zone; SQLite has no time zone
    support and returns naive values. Normalising here means domain code never sees a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use stratum.storage.utcnow()")
        value = value.astimezone(UTC)
        # SQLite compares datetimes as text: store every value in the same (UTC, offset-free) form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON documents; JSONB on PostgreSQL so later issues can index and query into them.
JSONDocument: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base for every domain table (``registry.tables``, ``governance.tables``, …)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
        list[Any]: JSONDocument,
    }


def _json_dumps(value: Any) -> str:
    # Keep Chinese (and any non-ASCII) text readable in the database instead of \\uXXXX escapes.
    return json.dumps(value, ensure_ascii=False)


def _normalise_url(raw: str) -> URL:
    url = make_url(raw)
    # psycopg (v3) is the only PostgreSQL driver we ship as an extra; SQLAlchemy's default for a
    # bare postgresql:// URL would be psycopg2.
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def _require_psycopg() -> None:
    try:
        importlib.import_module("psycopg")
    except ImportError as exc:
        raise ImportError(
            f"PostgreSQL support needs the psycopg driver; install it with: {POSTGRES_INSTALL_HINT}"
        ) from exc


def _sqlite_engine(url: URL, *, echo: bool) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        # One shared connection so every thread sees the same in-memory database (tests only: it
        # cannot run two transactions at once).
        engine = create_engine(
            url,
            echo=echo,
            json_serializer=_json_dumps,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, json_serializer=_json_dumps)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # We emit BEGIN ourselves (below): sqlite3's legacy mode skips BEGIN before SELECT and DDL,
        # which breaks transactional migrations and repeatable reads.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching to WAL itself may have to wait for another connection.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            # WAL: readers never block the writer and vice versa; NORMAL sync is durable in WAL
            # mode except for the last commits on power loss, the usual trade-off for WAL.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Write transactions take the write lock up front (IMMEDIATE). A deferred transaction that
        # reads, then writes, fails at once with "database is locked" if another writer committed
        # in between (busy_timeout cannot help it); IMMEDIATE makes writers queue instead.
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: URL, *, echo: bool) -> Engine:
    _require_psycopg()
    # pre_ping: a restarted server or an idle-timeout proxy must not fail the next request.
    return create_engine(url, echo=echo, json_serializer=_json_dumps, pool_pre_ping=True)


def advisory_lock(session: Session | Connection, name: str) -> None:
    """Serialise transactions that take the same ``name`` until the current transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: nothing to do, because every write
    transaction already holds the database write lock from its first statement.
    """
    bind = session.get_bind() if isinstance(session, Session) else session
    if bind.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


class Database:
    """An engine, its sessions, and schema migration for one database URL.

    Serves: every domain repository (through ``session()``), the gateway's readiness probe
    (``ping()``) and the CLI/gateway start-up (``migrate()``).
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = _normalise_url(url)
        if self.url.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(self.url, echo=echo)
        elif self.url.get_backend_name() == "postgresql":
            self.engine = _postgres_engine(self.url, echo=echo)
        else:
            raise ValueError(
                f"Unsupported database URL {self.url!r}: use sqlite:/// or postgresql+psycopg://"
            )
        # expire_on_commit=False: rows stay readable after the transaction (services convert them to
        # public schemas, sometimes after commit).
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.resolved_database_url)

    @property
    def dialect(self) -> str:
        """``'sqlite'`` or ``'postgresql'``."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction: commit when the block ends, roll back if it raises.

        ``write=False`` is for pure reads: on SQLite it starts a deferred transaction so that reads
        never queue behind writers. Do not write inside it.
        """
        factory = self._sessions if write else self._read_sessions
        with factory.begin() as session:
            yield session

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision`` with the Alembic scripts shipped in this package."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as connection:
            # Two processes starting together (gateway workers) must not both run the DDL.
            advisory_lock(connection, "stratum.migrate")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def ping(self) -> bool:
        """True when the database answers a trivial query (readiness probe)."""
        try:
            with self._read_sessions() as session:
                session.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"


class utc_day(FunctionElement[Any]):
    """``utc_day(column)``: the UTC calendar day of a stored instant, as ``YYYY-MM-DD`` text.

    SQLite stores instants as UTC text, so ``date()`` is enough; PostgreSQL converts to UTC first,
    whatever the session time zone.
    """

    type = String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
