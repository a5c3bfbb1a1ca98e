"""Database connections per project, and running checked SQL on them.

``DatabaseService`` serves the admin API, the CLI and ``model: "db/<name>"`` chat:

* ``add`` / ``list`` / ``get`` / ``remove``: connections of one project, the URL encrypted at
  rest (``secrets.SecretBox``), allow-list and row filters validated when registered;
* ``schema`` / ``schema_prompt``: the allowed tables and columns as the database has them now,
  with comments and a few sample values (sampled through the role's row filters, so the model
  never sees rows the asker may not see);
* ``run``: guard (``guard.check_sql``) then read-only execution (``executor.run_query``).

sqlglot and cryptography are the ``sql`` extra, imported when first needed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select

from stratum.errors import Conflict, InvalidRequest, NotFound
from stratum.governance import audit
from stratum.governance.tables import ProjectRow
from stratum.knowledge.sql.executor import (
    Column,
    SQLRejected,
    dialect_of,
    read_schema,
    run_query,
    sqlite_path,
)
from stratum.knowledge.sql.schemas import DatabaseCreate, DatabasePublic, SQLAnswer
from stratum.knowledge.sql.secrets import SecretBox
from stratum.knowledge.sql.tables import DatabaseRow
from stratum.settings import Settings
from stratum.storage import Database, utcnow

if TYPE_CHECKING:
    from types import ModuleType

_ROLES = ("*", "admin", "user", "org_admin", "developer", "viewer")
_SAMPLE_VALUES = 3  # distinct example values per column shown to the model
_SAMPLE_CHARS = 40  # longer sample values are cut


@dataclass(frozen=True)
class Connection:
    """A registered database with its decrypted URL: for this process only, never serialised."""

    public: DatabasePublic
    url: str
    project_id: str

    def filters_for(self, role: str) -> dict[str, str]:
        """Row filters of ``role``: its own plus the ``*`` ones, AND-ed per table."""
        merged: dict[str, list[str]] = {}
        for key in ("*", role):
            for table, condition in self.public.row_filters.get(key, {}).items():
                merged.setdefault(table.lower(), []).append(condition)
        return {t: " AND ".join(f"({c})" for c in conds) for t, conds in merged.items()}


def guard_module() -> ModuleType:
    try:
        from stratum.knowledge.sql import guard
    except ImportError as exc:
        raise InvalidRequest(
            "database QA needs the sql extra: pip install 'stratum[sql]'", code="missing_extra"
        ) from exc
    return guard


class DatabaseService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._box = SecretBox(settings)

    # --- registration -------------------------------------------------------------------------

    def add(
        self, *, project_id: str, project_path: str, spec: DatabaseCreate, actor: str = audit.LOCAL_ACTOR
    ) -> DatabasePublic:
        dialect = dialect_of(spec.url)
        if dialect == "sqlite" and not sqlite_path(spec.url).is_file():
            raise InvalidRequest(f"SQLite database not found: {sqlite_path(spec.url)}", param="url")
        guard = guard_module()
        filters: dict[str, dict[str, str]] = {}
        for role, by_table in spec.row_filters.items():
            if role not in _ROLES:
                raise InvalidRequest(f"row filters are keyed by role ({', '.join(_ROLES)}), not {role!r}")
            for table, condition in by_table.items():
                if table.lower() not in {t.lower() for t in spec.tables}:
                    raise InvalidRequest(f"row filter on {table!r}, which is not an allowed table")
                filters.setdefault(role, {})[table] = guard.check_filter(condition, dialect=dialect)
        for table, columns in spec.tables.items():
            if not columns:
                raise InvalidRequest(f'table {table!r} lists no columns; use ["*"] for all', param="tables")
        row = DatabaseRow(
            id="db_" + secrets.token_hex(6),
            project_id=project_id,
            name=spec.name,
            dialect=dialect,
            url_encrypted=self._box.encrypt(spec.url),
            url_display=_display_url(spec.url),
            model=spec.model,
            description=spec.description,
            tables=spec.tables,
            row_filters=filters,
            descriptions=spec.descriptions,
            max_rows=spec.max_rows or self._settings.sql_max_rows,
            timeout_s=spec.timeout_s or self._settings.sql_timeout,
            created_at=utcnow(),
        )
        with self._db.session() as session:
            if self._find(session, project_id, spec.name, missing_ok=True) is not None:
                raise Conflict(f"database {spec.name!r} already exists in {project_path}", param="name")
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="database.create",
                target=f"{project_path}/{spec.name}",
                org_id=_org_of(session, project_id),
                project_id=project_id,
                detail={"url": row.url_display, "model": spec.model, "tables": spec.tables},
            )
            return _public(row, project_path)

    def list_databases(self, *, project_id: str, project_path: str) -> list[DatabasePublic]:
        with self._db.session(write=False) as session:
            rows = session.scalars(
                select(DatabaseRow).where(DatabaseRow.project_id == project_id).order_by(DatabaseRow.name)
            )
            return [_public(row, project_path) for row in rows]

    def get(self, *, project_id: str, project_path: str, name: str) -> DatabasePublic:
        with self._db.session(write=False) as session:
            return _public(self._find(session, project_id, name), project_path)

    def remove(
        self, *, project_id: str, project_path: str, name: str, actor: str = audit.LOCAL_ACTOR
    ) -> None:
        with self._db.session() as session:
            row = self._find(session, project_id, name)
            session.delete(row)
            audit.append(
                session,
                actor=actor,
                action="database.delete",
                target=f"{project_path}/{name}",
                org_id=_org_of(session, project_id),
                project_id=project_id,
            )

    def connection(self, *, project_id: str, project_path: str, name: str) -> Connection:
        with self._db.session(write=False) as session:
            row = self._find(session, project_id, name)
            return Connection(
                public=_public(row, project_path),
                url=self._box.decrypt(row.url_encrypted),
                project_id=project_id,
            )

    # --- schema and queries -------------------------------------------------------------------

    def schema(self, conn: Connection) -> dict[str, list[Column]]:
        """Allowed tables and columns as they exist in the database now."""
        existing = read_schema(conn.url, list(conn.public.tables))
        allowed: dict[str, list[Column]] = {}
        for table, columns in conn.public.tables.items():
            found = existing.get(table) or existing.get(table.lower())
            if not found:
                continue
            wanted = {c.lower() for c in columns}
            allowed[table] = [c for c in found if "*" in wanted or c.name.lower() in wanted]
        if not allowed:
            raise InvalidRequest(f"none of the allowed tables of {conn.public.name!r} exist in the database")
        return allowed

    def run(
        self, conn: Connection, sql: str, *, role: str, schema: dict[str, list[Column]] | None = None
    ) -> SQLAnswer:
        """Check and run ``sql`` for ``role``; raises ``SQLRejected`` with the reason."""
        guard = guard_module()
        schema = schema if schema is not None else self.schema(conn)
        checked = guard.check_sql(
            sql,
            dialect=conn.public.dialect,
            allowed={t: {c.name: c.type for c in cols} for t, cols in schema.items()},
            row_filters=conn.filters_for(role),
            max_rows=conn.public.max_rows,
        )
        result = run_query(
            conn.url,
            checked.sql,
            max_rows=conn.public.max_rows,
            timeout_s=conn.public.timeout_s,
            tables=checked.tables,
        )
        return SQLAnswer(
            database=conn.public.name,
            sql=checked.sql,
            columns=result.columns,
            rows=result.rows,
            truncated=result.truncated,
            elapsed_ms=result.elapsed_ms,
        )

    def schema_prompt(self, conn: Connection, *, role: str) -> str:
        """The schema as the model sees it: tables, columns, types, comments, sample values."""
        schema = self.schema(conn)
        guard = guard_module()
        descriptions = {k.lower(): v for k, v in conn.public.descriptions.items()}
        lines = [f"Database dialect: {'SQLite' if conn.public.dialect == 'sqlite' else 'PostgreSQL'}."]
        if conn.public.description:
            lines.append(conn.public.description)
        for table, columns in schema.items():
            note = descriptions.get(table.lower())
            lines.append(f"\nTABLE {table}" + (f" -- {note}" if note else ""))
            for column in columns:
                comment = descriptions.get(f"{table}.{column.name}".lower()) or column.comment
                samples = self._samples(conn, schema, table, column.name, role=role, guard=guard)
                extra = f" -- {comment}" if comment else ""
                if samples:
                    extra += f" (e.g. {', '.join(samples)})"
                lines.append(f"  {column.name} {column.type}{extra}")
        return "\n".join(lines)

    def _samples(
        self,
        conn: Connection,
        schema: dict[str, list[Column]],
        table: str,
        column: str,
        *,
        role: str,
        guard: Any,
    ) -> list[str]:
        quoted_table, quoted_column = _quote(table), _quote(column)
        sql = (
            f"SELECT DISTINCT {quoted_column} FROM {quoted_table} "
            f"WHERE {quoted_column} IS NOT NULL LIMIT {_SAMPLE_VALUES}"
        )
        try:
            answer = self.run(conn, sql, role=role, schema=schema)
        except SQLRejected:
            return []
        return [repr(row[0])[:_SAMPLE_CHARS] for row in answer.rows]

    def _find(self, session: Any, project_id: str, name: str, *, missing_ok: bool = False) -> DatabaseRow:
        row = session.scalar(
            select(DatabaseRow).where(DatabaseRow.project_id == project_id, DatabaseRow.name == name)
        )
        if row is None and not missing_ok:
            raise NotFound(
                f"no database named {name!r} in this project", param="name", code="database_not_found"
            )
        return row  # type: ignore[no-any-return]


def _org_of(session: Any, project_id: str) -> str | None:
    """The project's organisation, so that org admins see these entries in their audit log."""
    return session.scalar(select(ProjectRow.org_id).where(ProjectRow.id == project_id))  # type: ignore[no-any-return]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _display_url(url: str) -> str:
    """The URL without its password."""
    if dialect_of(url) == "sqlite":
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


def _public(row: DatabaseRow, project_path: str) -> DatabasePublic:
    return DatabasePublic(
        id=row.id,
        project=project_path,
        name=row.name,
        dialect=row.dialect,
        url=row.url_display,
        model=row.model,
        tables=row.tables,
        row_filters=row.row_filters,
        descriptions=row.descriptions,
        description=row.description,
        max_rows=row.max_rows,
        timeout_s=row.timeout_s,
        created_at=row.created_at,
    )
