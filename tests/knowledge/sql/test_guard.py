"""The SQL guard: one read-only SELECT over allowed tables and columns, filters and a limit applied."""

from __future__ import annotations

import pytest

from stratum.knowledge.sql.executor import SQLRejected
from stratum.knowledge.sql.guard import check_filter, check_sql

ALLOWED = {
    "orders": {
        "id": "INTEGER",
        "地区": "TEXT",
        "product": "TEXT",
        "amount": "REAL",
        "customer_id": "INTEGER",
    },
    "customers": {"id": "INTEGER", "name": "TEXT"},
}
FILTERS = {"orders": "地区 = '华东'"}


def check(sql: str, dialect: str = "sqlite", **kw: object) -> str:
    return check_sql(sql, dialect=dialect, allowed=ALLOWED, row_filters=FILTERS, max_rows=100, **kw).sql  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT id FROM orders; DROP TABLE orders", "exactly one statement"),
        ("SELECT id FROM orders;; DELETE FROM orders", "exactly one statement"),
        ("DROP TABLE orders", "only SELECT"),
        ("DELETE FROM orders", "only SELECT"),
        ("UPDATE orders SET amount = 0", "only SELECT"),
        ("INSERT INTO orders (id) VALUES (99)", "only SELECT"),
        ("PRAGMA query_only = 0", "only SELECT"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "only SELECT"),
        ("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "DELETE is not allowed"),
        ("WITH u AS (UPDATE orders SET amount = 0 RETURNING id) SELECT id FROM u", "UPDATE is not allowed"),
        ("SELECT * INTO stolen FROM orders", "INTO is not allowed"),
        ("SELECT id FROM orders UNION SELECT salary FROM employees", "table 'employees' is not allowed"),
        ("SELECT id FROM orders UNION SELECT phone FROM customers", "not an allowed column"),
        ("SELECT cost FROM orders", "not an allowed column"),
        ("SELECT o.cost AS c FROM orders o", "not an allowed column"),
        ("SELECT x.c FROM (SELECT cost AS c FROM orders) x", "not an allowed column"),
        ("SELECT id FROM orders WHERE id IN (SELECT id FROM employees)", "employees"),
        ("SELECT name FROM sqlite_master", "sqlite_master"),
        ("SELECT * FROM main.orders", "qualified table names"),
        ("SELECT * FROM pg_catalog.pg_user", "qualified table names"),
        ("SELECT load_extension('/tmp/evil.so')", "load_extension"),
        ("SELECT * FROM pragma_table_info('orders')", "pragma_table_info"),
        ("SELECT readfile('/etc/passwd')", "readfile"),
        ("SELECT hex(randomblob(1000000000))", "randomblob"),
        ("WITH orders AS (SELECT 1 AS id) SELECT id FROM orders", "shadows a table"),
        ("SELEC id FROM orders", "parse"),
    ],
)
def test_rejects_with_a_reason(sql: str, reason: str) -> None:
    with pytest.raises(SQLRejected) as excinfo:
        check(sql)
    assert reason in excinfo.value.message
    assert excinfo.value.status_code == 400 and excinfo.value.code == "sql_rejected"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pg_sleep(10)",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT id FROM orders FOR UPDATE",
        "SELECT * FROM generate_series(1, 10)",
        "COPY orders TO '/tmp/out'",
        "SET statement_timeout = 0",
    ],
)
def test_rejects_postgres_specials(sql: str) -> None:
    with pytest.raises(SQLRejected):
        check(sql, dialect="postgresql")


def test_comments_are_dropped_from_what_runs() -> None:
    sql = check("SELECT id FROM orders -- ; DROP TABLE orders\n /* DELETE FROM orders */")
    assert "DROP" not in sql and "DELETE" not in sql and "--" not in sql and "/*" not in sql


def test_star_expands_to_allowed_columns_only() -> None:
    sql = check("SELECT * FROM customers")
    assert "name" in sql and "phone" not in sql
    assert "cost" not in check("SELECT o.* FROM orders AS o")


def test_row_filter_is_applied_to_every_reference() -> None:
    for sql in (
        "SELECT SUM(amount) FROM orders",
        "SELECT c.name, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id",
        "WITH t AS (SELECT 地区, amount FROM orders) SELECT 地区, SUM(amount) FROM t GROUP BY 地区",
        "SELECT id FROM customers UNION ALL SELECT id FROM orders",
        "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders)",
    ):
        checked = check(sql)
        references = checked.count("FROM orders")
        assert references >= 1 and checked.count("WHERE 地区 = '华东'") == references, checked


def test_limit_is_added_or_kept_when_smaller() -> None:
    assert check("SELECT id FROM orders").endswith("LIMIT 101")
    assert check("SELECT id FROM orders LIMIT 5").endswith("LIMIT 5")
    assert check("SELECT id FROM orders LIMIT 100000").endswith("LIMIT 101")
    union = check("SELECT id FROM orders UNION SELECT id FROM customers")
    assert union.endswith("LIMIT 101")


def test_accepts_ordinary_analytics_in_chinese() -> None:
    sql = check("SELECT 地区, SUM(amount) AS 销售额 FROM orders GROUP BY 地区 ORDER BY 销售额 DESC")
    assert "SUM" in sql and "GROUP BY" in sql
    check("SELECT strftime('%Y', 'now') AS y", dialect="sqlite")
    check("SELECT COUNT(*) FROM orders WHERE product LIKE '%电脑%'")


def test_filters_are_validated() -> None:
    assert check_filter("地区 = '华东'", dialect="sqlite") == "地区 = '华东'"
    for bad in ("1; DROP TABLE orders", "id IN (SELECT id FROM employees)", "load_extension('x') = 1"):
        with pytest.raises(Exception) as excinfo:
            check_filter(bad, dialect="sqlite")
        assert getattr(excinfo.value, "status_code", None) == 400
