"""The SQL guard: what a model (or a user) wrote is parsed and checked before anything runs.

``check_sql`` accepts exactly one read-only query and returns the SQL that will actually run,
regenerated from the checked syntax tree (so comments and anything hidden in them are gone):

1. One statement, parsed by sqlglot in the target dialect; a parse error is a rejection.
2. The root is a SELECT or a set operation (UNION / INTERSECT / EXCEPT) of SELECTs, optionally
   with CTEs. No node anywhere may write or change state: INSERT/UPDATE/DELETE/MERGE (also
   inside a CTE, ``WITH d AS (DELETE ... RETURNING *)``), DDL, PRAGMA, ATTACH, SET, COPY,
   ``SELECT ... INTO``, ``FOR UPDATE`` locks, or any statement sqlglot only knows as a command.
3. Functions: sqlglot's typed functions are allowed except a deny list (file, extension, sleep,
   admin functions); functions sqlglot does not know must be on an allow list of harmless ones.
   Table-valued functions (``pragma_table_info(...)``, ``generate_series``) are rejected.
4. Tables: only allow-listed tables, unqualified (no other schema or attached database); CTE
   names may not shadow a real table. Columns: the query is qualified against a schema holding
   only the allowed columns, so ``*`` expands to allowed columns only and a forbidden column —
   through an alias, a subquery, a CTE or a UNION branch — cannot be resolved and is rejected.
5. Row filters: every reference to a filtered table is replaced by
   ``(SELECT * FROM table WHERE <filter>) AS alias``, wherever it occurs (joins, subqueries, CTEs,
   UNION branches), so the filter cannot be bypassed by the query's own structure.
6. A row limit: the outer query gets ``LIMIT max_rows + 1`` (or keeps a smaller literal limit);
   the extra row tells the caller the result was truncated.

Timeouts and the read-only connection are the executor's (``stratum.knowledge.sql.executor``);
the guard is the first line of defence, not the only one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from stratum.errors import InvalidRequest
from stratum.knowledge.sql.executor import SQLRejected

# sqlglot dialect names for the targets we support.
DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres"}

_FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Pragma,
    exp.Set,
    exp.Copy,
    exp.Into,
    exp.Lock,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Use,
    exp.Grant,
    exp.Attach,
    exp.Detach,
    exp.TruncateTable,
    exp.LoadData,
)

# Known to sqlglot but dangerous or pointless here: filesystem, extensions, sleeping, admin.
_DENIED_FUNCTIONS = frozenset(
    {
        "load_extension",
        "readfile",
        "writefile",
        "edit",
        "fts3_tokenizer",
        "zeroblob",
        "randomblob",
        "sqlite_compileoption_get",
        "sqlite_offset",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "lo_import",
        "lo_export",
        "lo_get",
        "dblink",
        "dblink_exec",
        "set_config",
        "current_setting",
        "txid_current",
        "nextval",
        "setval",
        "sleep",
        "benchmark",
        "query_to_xml",
        "table_to_xml",
        "database_to_xml",
        "read_csv",
        "read_parquet",
        "read_json",
    }
)

# Functions sqlglot does not model (it parses them as "anonymous") that are safe to call.
_ALLOWED_ANONYMOUS = frozenset(
    {
        "strftime",
        "date",
        "time",
        "datetime",
        "julianday",
        "unixepoch",
        "printf",
        "format",
        "instr",
        "ifnull",
        "nullif",
        "iif",
        "typeof",
        "total",
        "group_concat",
        "string_agg",
        "char",
        "unicode",
        "likelihood",
        "glob",
        "date_part",
        "date_trunc",
        "to_char",
        "to_date",
        "extract",
        "age",
        "justify_days",
        "initcap",
        "split_part",
        "btrim",
        "ltrim",
        "rtrim",
        "trim",
        "replace",
        "substr",
        "substring",
        "round",
        "abs",
        "ceil",
        "floor",
        "sign",
        "percentile_cont",
        "percentile_disc",
        "median",
        "stddev",
        "variance",
    }
)


@dataclass(frozen=True)
class CheckedSQL:
    sql: str  # what runs
    tables: tuple[str, ...]  # allowed tables it reads


def check_sql(
    sql: str,
    *,
    dialect: str,
    allowed: Mapping[str, Mapping[str, str]],
    row_filters: Mapping[str, str] | None = None,
    max_rows: int = 200,
) -> CheckedSQL:
    """Check ``sql`` against the allow-list and return the rewritten SQL; raise ``SQLRejected``.

    ``allowed`` maps each allowed table to its allowed columns and their types (``{"orders":
    {"id": "INTEGER", ...}}``). ``row_filters`` maps tables to a SQL condition on that table.
    """
    read = DIALECTS[dialect]
    tables = {name.lower(): dict(columns) for name, columns in allowed.items()}
    filters = {name.lower(): cond for name, cond in (row_filters or {}).items()}
    try:
        statements = [s for s in sqlglot.parse(sql, read=read) if s is not None]
    except (ParseError, SqlglotError) as exc:
        raise SQLRejected(f"the SQL does not parse: {_first_line(exc)}") from exc
    if len(statements) != 1:
        raise SQLRejected(f"exactly one statement is allowed, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query) or not isinstance(tree, (exp.Select, exp.SetOperation)):
        raise SQLRejected(f"only SELECT queries are allowed, not {tree.key.upper()}")

    for node in tree.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise SQLRejected(f"{node.key.upper()} is not allowed: queries are read-only")
        if isinstance(node, exp.Func):
            _check_function(node)

    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for name in cte_names:
        if name in tables or name in filters:
            raise SQLRejected(f"the CTE name {name!r} shadows a table; choose another name")
    read_tables: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise SQLRejected(f"table functions are not allowed: {table.this.sql(read)}")
        if table.args.get("db") or table.args.get("catalog"):
            raise SQLRejected(f"qualified table names are not allowed: {table.sql(read)}")
        name = table.name.lower()
        if name in cte_names:
            continue
        if name not in tables:
            raise SQLRejected(f"table {table.name!r} is not allowed (allowed: {', '.join(sorted(tables))})")
        read_tables.add(name)

    try:
        qualified = qualify(
            tree,
            schema={name: cols for name, cols in tables.items()},
            dialect=read,
            validate_qualify_columns=True,
            quote_identifiers=False,
            identify=False,
        )
    except OptimizeError as exc:
        raise SQLRejected(f"{_first_line(exc)} (not an allowed column of the tables it reads)") from exc

    for table in list(qualified.find_all(exp.Table)):
        name = table.name.lower()
        if name in cte_names or name not in filters:
            continue
        inner = exp.select("*").from_(exp.to_table(table.name)).where(_condition(filters[name], read))
        table.replace(inner.subquery(table.alias_or_name))

    limit = max_rows + 1
    existing = qualified.args.get("limit")
    current = existing.expression if isinstance(existing, exp.Limit) else None
    if not (isinstance(current, exp.Literal) and current.is_int and int(current.this) <= limit):
        assert isinstance(qualified, exp.Query)
        qualified = qualified.limit(limit, copy=False)
    return CheckedSQL(sql=qualified.sql(dialect=read, comments=False), tables=tuple(sorted(read_tables)))


def check_filter(condition: str, *, dialect: str) -> str:
    """Validate a row-filter condition at registration: one boolean expression, no subqueries."""
    parsed = _condition(condition, DIALECTS[dialect])
    for node in parsed.walk():
        if isinstance(node, (exp.Query, *_FORBIDDEN_NODES)):
            raise InvalidRequest(f"a row filter is a plain condition, not a query: {condition!r}")
        if isinstance(node, exp.Func):
            _check_function(node)
    return parsed.sql(dialect=DIALECTS[dialect], comments=False)


def _condition(condition: str, read: str) -> exp.Expression:
    try:
        parsed: exp.Expression = sqlglot.parse_one(condition, read=read, into=exp.Condition)  # type: ignore[assignment]
    except (ParseError, SqlglotError) as exc:
        raise InvalidRequest(f"row filter {condition!r} does not parse: {_first_line(exc)}") from exc
    return parsed


def _check_function(node: exp.Func) -> None:
    name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
    if name in _DENIED_FUNCTIONS or name.startswith(("pg_", "lo_", "dblink", "sqlite_")):
        raise SQLRejected(f"function {name}() is not allowed")
    if isinstance(node, exp.Anonymous) and name not in _ALLOWED_ANONYMOUS:
        raise SQLRejected(f"function {name}() is not on the allow list")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
