"""Running checked SQL on a read-only connection, with a row cap and a timeout; reading schemas.

SQLite: the file is opened through a ``file:...?mode=ro`` URI (the OS-level file handle cannot
write), ``PRAGMA query_only = ON``, an authoriser that allows only reads of the allowed tables
and function calls (a second line behind the guard: no ATTACH, no PRAGMA, no writes), a cap on
string/blob length, and a progress handler that aborts the statement at the deadline.

PostgreSQL (``pip install 'stratum[postgres]'``): every query runs in its own transaction started
with ``SET TRANSACTION READ ONLY`` and ``SET LOCAL statement_timeout``, and is rolled back.

Both fetch at most ``limit`` rows.
"""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from stratum.errors import InvalidRequest, UpstreamError

# Longest string or blob a query may build (SQLite's own default is 1 GB).
_MAX_VALUE_BYTES = 10_000_000
# The progress handler runs every this many SQLite VM instructions.
_PROGRESS_STEPS = 10_000


class SQLRejected(InvalidRequest):
    """The SQL was not run (or was stopped); ``message`` says why."""

    code = "sql_rejected"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str | None = None


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    elapsed_ms: float


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///path`` URL (or a bare path)."""
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if url.startswith("sqlite:") and not url.startswith("sqlite:///"):
        raise InvalidRequest("SQLite URLs look like sqlite:///path/to/file.db", param="url")
    return Path(path).expanduser()


def dialect_of(url: str) -> str:
    if url.startswith("sqlite:///") or url.endswith((".db", ".sqlite", ".sqlite3")):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgresql"
    raise InvalidRequest("the database URL must be sqlite:///path or postgresql://...", param="url")


def run_query(
    url: str, sql: str, *, max_rows: int, timeout_s: float, tables: Iterable[str] | None = None
) -> QueryResult:
    """Run one checked query read-only, keeping ``max_rows`` rows (``truncated`` if there were more).

    ``tables`` restricts what SQLite's authoriser lets the statement read.
    """
    if dialect_of(url) == "sqlite":
        return _run_sqlite(sqlite_path(url), sql, limit=max_rows + 1, timeout_s=timeout_s, tables=tables)
    return _run_postgres(url, sql, limit=max_rows + 1, timeout_s=timeout_s)


def read_schema(url: str, tables: Iterable[str]) -> dict[str, list[Column]]:
    """Columns (name, declared type, comment) of each existing table among ``tables``."""
    wanted = list(tables)
    if dialect_of(url) == "sqlite":
        with _sqlite_connect(sqlite_path(url)) as conn:
            out: dict[str, list[Column]] = {}
            for table in wanted:
                rows = conn.execute("SELECT name, type FROM pragma_table_info(?)", (table,)).fetchall()
                if rows:
                    out[table] = [Column(name=r[0], type=r[1] or "TEXT") for r in rows]
            return out
    with _pg_connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.table_name, c.column_name, c.data_type, "
            "col_description(format('%%I.%%I', c.table_schema, c.table_name)::regclass::oid, "
            "c.ordinal_position) FROM information_schema.columns c "
            "WHERE c.table_schema = current_schema() AND c.table_name = ANY(%s) "
            "ORDER BY c.table_name, c.ordinal_position",
            (wanted,),
        )
        found: dict[str, list[Column]] = {}
        for table, name, type_, comment in cur.fetchall():
            found.setdefault(table, []).append(Column(name=name, type=type_, comment=comment))
        conn.rollback()
        return found


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise InvalidRequest(f"SQLite database not found: {path}", param="url")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    return conn


def _run_sqlite(
    path: Path, sql: str, *, limit: int, timeout_s: float, tables: Iterable[str] | None
) -> QueryResult:
    conn = _sqlite_connect(path)
    allowed = {t.lower() for t in tables} if tables is not None else None
    deadline = time.monotonic() + timeout_s

    def authorise(action: int, arg1: str | None, arg2: str | None, db: str | None, _: str | None) -> int:
        if action == sqlite3.SQLITE_READ:
            # arg1 is the table; a CTE's rows are reported with no database name.
            if db is None:
                return sqlite3.SQLITE_OK
            ok = allowed is None or (arg1 or "").lower() in allowed
            return sqlite3.SQLITE_OK if ok and db == "main" else sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE):
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    conn.set_authorizer(authorise)
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, _PROGRESS_STEPS)
    started = time.perf_counter()
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchmany(limit)
        columns = [d[0] for d in cursor.description or ()]
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise SQLRejected(f"the query ran longer than {timeout_s:g} s and was stopped") from exc
        if "not authorized" in str(exc) or "prohibited" in str(exc):
            raise SQLRejected(f"the database refused the query: {exc}") from exc
        raise SQLRejected(f"the database rejected the query: {exc}") from exc
    except (sqlite3.DataError, sqlite3.DatabaseError) as exc:
        raise SQLRejected(f"the database rejected the query: {exc}") from exc
    finally:
        conn.close()
    return _result(columns, rows, limit, started)


def _pg_connect(url: str) -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise InvalidRequest(
            "PostgreSQL databases need the postgres extra: pip install 'stratum[postgres]'",
            code="missing_extra",
        ) from exc
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        return psycopg.connect(dsn, connect_timeout=10, autocommit=False)
    except psycopg.Error as exc:
        raise UpstreamError(f"cannot connect to the database: {str(exc).splitlines()[0]}") from exc


def _run_postgres(url: str, sql: str, *, limit: int, timeout_s: float) -> QueryResult:
    import psycopg

    with _pg_connect(url) as conn:
        started = time.perf_counter()
        try:
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
                cur.execute(sql)  # type: ignore[arg-type]  # checked SQL, not a literal
                rows = cur.fetchmany(limit)
                columns = [d.name for d in cur.description or ()]
        except psycopg.errors.QueryCanceled as exc:
            raise SQLRejected(f"the query ran longer than {timeout_s:g} s and was stopped") from exc
        except psycopg.Error as exc:
            raise SQLRejected(f"the database rejected the query: {str(exc).splitlines()[0]}") from exc
        finally:
            conn.rollback()
    return _result(columns, rows, limit, started)


def _result(columns: list[str], rows: list[Any], limit: int, started: float) -> QueryResult:
    # ``limit`` is max_rows + 1: getting that many rows means there were more than max_rows.
    truncated = len(rows) >= limit
    kept = rows[: limit - 1]
    return QueryResult(
        columns=columns,
        rows=[[_plain(v) for v in row] for row in kept],
        truncated=truncated,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _plain(value: Any) -> Any:
    """JSON-safe cell values."""
    if isinstance(value, decimal.Decimal):
        return float(value) if value % 1 else int(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    return value


def table_columns(schema: Mapping[str, list[Column]]) -> dict[str, dict[str, str]]:
    return {t: {c.name: c.type for c in cols} for t, cols in schema.items()}
