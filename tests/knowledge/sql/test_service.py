"""DatabaseService: registration (encrypted URL), schema prompt, checked read-only execution."""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from stratum.errors import Conflict, InvalidRequest, NotFound
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tenancy import TenancyService
from stratum.knowledge.sql.executor import SQLRejected
from stratum.knowledge.sql.qa import answer_text, build_messages, extract_sql
from stratum.knowledge.sql.schemas import DatabaseCreate
from stratum.knowledge.sql.service import DatabaseService
from stratum.knowledge.sql.tables import DatabaseRow
from stratum.settings import Settings
from stratum.storage import Database
from tests.knowledge.sql.sample import TABLES, VIEWER_FILTERS, build_postgres, build_sqlite


@pytest.fixture
def project(db: Database) -> tuple[str, str]:
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="acme"))
    found = tenancy.create_project("acme", ProjectCreate(name="销售"))
    return found.id, found.path


@pytest.fixture
def service(db: Database, tmp_path: Path) -> DatabaseService:
    return DatabaseService(db, Settings(home=tmp_path / "home"))


@pytest.fixture
def sales(tmp_path: Path) -> Path:
    return build_sqlite(tmp_path / "sales.db")


def _register(service: DatabaseService, project: tuple[str, str], url: str, **extra: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {"max_rows": 50, **extra}
    spec = DatabaseCreate(
        name="sales", url=url, model="fake", tables=TABLES, row_filters=VIEWER_FILTERS, **fields
    )  # type: ignore[arg-type]
    service.add(project_id=project[0], project_path=project[1], spec=spec)
    return service.connection(project_id=project[0], project_path=project[1], name="sales")


def test_register_list_remove_and_the_url_is_encrypted(
    service: DatabaseService, project: tuple[str, str], db: Database, tmp_path: Path
) -> None:
    pg_url = "postgresql://analyst:s3cret-pw@db.example:5432/sales"
    spec = DatabaseCreate(name="warehouse", url=pg_url, model="fake", tables={"orders": ["*"]})
    shown = service.add(project_id=project[0], project_path=project[1], spec=spec)
    assert (
        shown.url == "postgresql://analyst@db.example:5432/sales" and "s3cret" not in shown.model_dump_json()
    )
    with db.session(write=False) as session:
        stored = session.scalar(select(DatabaseRow.url_encrypted))
    assert stored and "s3cret" not in stored and "analyst" not in stored
    assert (tmp_path / "home" / "secret.key").stat().st_mode & 0o777 == 0o600
    conn = service.connection(project_id=project[0], project_path=project[1], name="warehouse")
    assert conn.url == pg_url
    with pytest.raises(Conflict):
        service.add(project_id=project[0], project_path=project[1], spec=spec)
    assert [d.name for d in service.list_databases(project_id=project[0], project_path=project[1])] == [
        "warehouse"
    ]
    service.remove(project_id=project[0], project_path=project[1], name="warehouse")
    with pytest.raises(NotFound):
        service.get(project_id=project[0], project_path=project[1], name="warehouse")


def test_another_key_cannot_decrypt(
    db: Database, project: tuple[str, str], tmp_path: Path, sales: Path
) -> None:
    from cryptography.fernet import Fernet

    first = DatabaseService(db, Settings(home=tmp_path / "h", secret_key=Fernet.generate_key().decode()))
    _register(first, project, f"sqlite:///{sales}")
    other = DatabaseService(db, Settings(home=tmp_path / "h", secret_key=Fernet.generate_key().decode()))
    with pytest.raises(Exception, match="cannot be decrypted"):
        other.connection(project_id=project[0], project_path=project[1], name="sales")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "mysql://x/y"}, "sqlite:///path or postgresql"),
        ({"url": "sqlite:////no/such/file.db"}, "not found"),
        ({"row_filters": {"boss": {"orders": "1 = 1"}}}, "keyed by role"),
        ({"row_filters": {"viewer": {"employees": "1 = 1"}}}, "not an allowed table"),
        ({"row_filters": {"viewer": {"orders": "1; DROP TABLE orders"}}}, "filter"),
    ],
)
def test_registration_is_validated(
    service: DatabaseService, project: tuple[str, str], sales: Path, change: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {
        "name": "bad",
        "url": f"sqlite:///{sales}",
        "model": "fake",
        "tables": TABLES,
    }
    fields.update(change)
    with pytest.raises(InvalidRequest) as excinfo:
        service.add(project_id=project[0], project_path=project[1], spec=DatabaseCreate(**fields))  # type: ignore[arg-type]
    assert message in excinfo.value.message
    assert service.list_databases(project_id=project[0], project_path=project[1]) == []


def test_schema_prompt_shows_allowed_columns_and_filtered_samples(
    service: DatabaseService, project: tuple[str, str], sales: Path
) -> None:
    conn = _register(service, project, f"sqlite:///{sales}", descriptions={"orders.amount": "订单金额（元）"})
    prompt = service.schema_prompt(conn, role="viewer")
    assert "TABLE orders" in prompt and "地区" in prompt and "订单金额（元）" in prompt
    assert "cost" not in prompt and "phone" not in prompt and "employees" not in prompt
    assert "'华东'" in prompt and "华北" not in prompt  # samples obey the viewer's filter
    assert "华北" in service.schema_prompt(conn, role="developer")
    messages = build_messages(prompt, "每个地区的销售额是多少？")
    assert messages[0]["role"] == "system" and "SELECT" in messages[0]["content"]


def test_run_checks_filters_and_answers_with_a_table(
    service: DatabaseService, project: tuple[str, str], sales: Path
) -> None:
    conn = _register(service, project, f"sqlite:///{sales}")
    # The scripted model's reply, fenced as models write it.
    sql = extract_sql(
        "```sql\nSELECT 地区, SUM(amount) AS 销售额 FROM orders GROUP BY 地区 ORDER BY 地区;\n```"
    )
    everyone = service.run(conn, sql, role="developer")
    assert everyone.columns == ["地区", "销售额"]
    assert everyone.rows == [["华东", 11347.0], ["华北", 11698.0], ["华南", 299.0]]
    viewer = service.run(conn, sql, role="viewer")
    assert viewer.rows == [["华东", 11347.0]]
    text_answer = answer_text(viewer)
    assert "```sql" in text_answer and "| 华东 | 11347.0 |" in text_answer and "地区 = '华东'" in text_answer
    with pytest.raises(SQLRejected, match="employees"):
        service.run(conn, "SELECT name FROM customers UNION SELECT name FROM employees", role="developer")


def test_row_limit_and_truncation(service: DatabaseService, project: tuple[str, str], sales: Path) -> None:
    conn = _register(service, project, f"sqlite:///{sales}", max_rows=2)
    answer = service.run(conn, "SELECT id FROM orders ORDER BY id", role="developer")
    assert answer.rows == [[1], [2]] and answer.truncated
    assert "truncated" in answer_text(answer)
    exact = service.run(conn, "SELECT id FROM customers WHERE id <= 2", role="developer")
    assert exact.rows == [[1], [2]] and not exact.truncated


@pytest.mark.slow
def test_recursive_cte_bomb_times_out(
    service: DatabaseService, project: tuple[str, str], sales: Path
) -> None:
    conn = _register(service, project, f"sqlite:///{sales}", timeout_s=0.5)
    bomb = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r"
    with pytest.raises(SQLRejected, match=r"longer than 0\.5 s"):
        service.run(conn, bomb, role="developer")


def test_the_sqlite_connection_is_read_only_even_behind_the_guard(sales: Path) -> None:
    from stratum.knowledge.sql.executor import run_query

    url = f"sqlite:///{sales}"
    for sql in (
        "DELETE FROM orders",
        "ATTACH DATABASE ':memory:' AS x",
        "PRAGMA query_only = 0",
        "SELECT salary FROM employees",
    ):
        with pytest.raises(SQLRejected):
            run_query(url, sql, max_rows=10, timeout_s=5, tables=["orders", "customers"])
    with sqlite3.connect(sales) as check:
        assert check.execute("SELECT COUNT(*) FROM orders").fetchone() == (6,)
    check.close()


@pytest.mark.postgres
def test_postgres_target(service: DatabaseService, project: tuple[str, str]) -> None:
    base = os.environ.get("STRATUM_TEST_PG_URL")
    if not base:
        pytest.skip("STRATUM_TEST_PG_URL is not set")
    schema = f"sales_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = (
        make_url(base).set(drivername="postgresql").update_query_dict({"options": f"-csearch_path={schema}"})
    )
    plain = url.render_as_string(hide_password=False)
    try:
        build_postgres(plain)
        conn = _register(service, project, plain, timeout_s=1)
        assert "订单金额（元）" in service.schema_prompt(conn, role="developer")  # a PostgreSQL comment
        sql = "SELECT 地区, SUM(amount) AS total FROM orders GROUP BY 地区 ORDER BY 地区"
        assert service.run(conn, sql, role="viewer").rows == [["华东", 11347]]
        assert len(service.run(conn, sql, role="developer").rows) == 3
        with pytest.raises(SQLRejected, match="longer than 1 s"):
            service.run(
                conn,
                "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r",
                role="developer",
            )
        from stratum.knowledge.sql.executor import run_query

        with pytest.raises(SQLRejected, match="read-only"):
            run_query(plain, "DELETE FROM orders", max_rows=5, timeout_s=5)
        assert service.run(conn, "SELECT COUNT(*) AS n FROM orders", role="developer").rows == [[6]]
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
