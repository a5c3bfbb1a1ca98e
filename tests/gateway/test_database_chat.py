"""model "db/<name>" on /v1/chat/completions and the database admin routes, with a scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratum.governance.schemas import OrgCreate, ProjectCreate
from tests.gateway.conftest import Gateway
from tests.knowledge.sql.sample import TABLES, build_sqlite

BASE = "/admin/v1/orgs/acme/projects/sales/databases"
SQL_REPLY = (
    "好的，查询如下：\n```sql\n"
    "SELECT 地区, SUM(amount) AS 销售额 FROM orders GROUP BY 地区 ORDER BY 地区\n```"
)


@pytest.fixture
def keys(gateway: Gateway, tmp_path: Path) -> dict[str, dict[str, str]]:
    state = gateway.state
    state.tenancy.create_org(OrgCreate(name="acme"))
    state.tenancy.create_project("acme", ProjectCreate(name="sales"))
    out = {}
    for role, tenant in (("org_admin", "acme"), ("developer", "acme/sales"), ("viewer", "acme/sales")):
        key, _ = state.keys.create_key(name=role, role=role, project=tenant)
        out[role] = {"authorization": f"Bearer {key}"}
    db = build_sqlite(tmp_path / "销售.db")
    body = {
        "name": "sales",
        "url": f"sqlite:///{db}",
        "model": "fake",
        "tables": TABLES,
        "row_filters": {"developer": {"orders": "地区 = '华东'"}},
        "descriptions": {"orders": "销售订单"},
    }
    created = gateway.client.post(BASE, json=body, headers=out["org_admin"])
    assert created.status_code == 201, created.text
    assert created.json()["url"].startswith("sqlite:///") and created.json()["max_rows"] == 200
    return out


def test_admin_routes(gateway: Gateway, keys: dict[str, dict[str, str]]) -> None:
    listed = gateway.client.get(BASE, headers=keys["viewer"])
    assert [d["name"] for d in listed.json()] == ["sales"]
    spec = {"name": "other", "url": "sqlite:///x.db", "model": "fake", "tables": {"orders": ["*"]}}
    denied = gateway.client.post(BASE, json=spec, headers=keys["developer"])
    assert denied.status_code == 403 and denied.json()["error"]["rule"] == "rbac.developer"
    query = gateway.client.post(
        f"{BASE}/sales/query", json={"sql": "SELECT COUNT(*) AS n FROM orders"}, headers=keys["viewer"]
    )
    assert query.status_code == 200 and query.json()["rows"] == [[6]]
    # The developer's row filter applies on this route too.
    mine = gateway.client.post(
        f"{BASE}/sales/query", json={"sql": "SELECT COUNT(*) AS n FROM orders"}, headers=keys["developer"]
    )
    assert mine.json()["rows"] == [[3]]
    rejected = gateway.client.post(
        f"{BASE}/sales/query", json={"sql": "SELECT * FROM employees"}, headers=keys["viewer"]
    )
    assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "sql_rejected"
    assert "employees" in rejected.json()["error"]["message"]
    assert gateway.client.delete(f"{BASE}/sales", headers=keys["developer"]).status_code == 403
    assert gateway.client.delete(f"{BASE}/sales", headers=keys["org_admin"]).status_code == 204
    assert gateway.client.get(f"{BASE}/sales", headers=keys["viewer"]).status_code == 404


def test_chat_answers_with_the_executed_sql_and_table(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    gateway.replies[:] = [SQL_REPLY]
    response = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "db/sales", "messages": [{"role": "user", "content": "各地区的销售额是多少？"}]},
        headers=keys["developer"],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    extension = body["stratum_sql"]
    assert extension["rows"] == [["华东", 11347.0]]  # the developer's row filter was injected
    assert "地区 = '华东'" in extension["sql"] and extension["question"] == "各地区的销售额是多少？"
    content = body["choices"][0]["message"]["content"]
    assert "```sql" in content and "| 华东 | 11347.0 |" in content
    assert body["usage"]["completion_tokens"] > 0
    # The model saw the schema, not forbidden columns.
    prompt = gateway.engines["fake"].requests[-1].messages[0]["content"]
    assert "销售订单" in prompt and "cost" not in prompt and "phone" not in prompt


def test_chat_reports_rejected_sql(gateway: Gateway, keys: dict[str, dict[str, str]]) -> None:
    gateway.replies[:] = ["SELECT name, salary FROM employees; DROP TABLE orders"]
    response = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "db/sales", "messages": [{"role": "user", "content": "员工工资？"}]},
        headers=keys["developer"],
    )
    assert response.status_code == 200
    assert "exactly one statement" in response.json()["stratum_sql"]["rejected"]
    assert "rejected" in response.json()["choices"][0]["message"]["content"]


def test_chat_streams(gateway: Gateway, keys: dict[str, dict[str, str]]) -> None:
    gateway.replies[:] = [SQL_REPLY]
    with gateway.client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "db/sales", "stream": True, "messages": [{"role": "user", "content": "销售额"}]},
        headers=keys["developer"],
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert "| 华东 | 11347.0 |" in text
    assert events[-1]["stratum_sql"]["rows"] == [["华东", 11347.0]]


def test_chat_needs_a_project_key_and_a_known_database(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    messages = [{"role": "user", "content": "你好"}]
    platform = gateway.client.post(
        "/v1/chat/completions", json={"model": "db/sales", "messages": messages}, headers=gateway.headers
    )
    assert platform.status_code == 400 and "per project" in platform.json()["error"]["message"]
    missing = gateway.client.post(
        "/v1/chat/completions", json={"model": "db/nope", "messages": messages}, headers=keys["developer"]
    )
    assert missing.status_code == 404


def test_another_projects_key_cannot_reach_the_database(
    gateway: Gateway, keys: dict[str, dict[str, str]]
) -> None:
    gateway.state.tenancy.create_project("acme", ProjectCreate(name="other"))
    other, _ = gateway.state.keys.create_key(name="other", role="developer", project="acme/other")
    gateway.replies[:] = [SQL_REPLY]
    response = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "db/sales", "messages": [{"role": "user", "content": "销售额"}]},
        headers={"authorization": f"Bearer {other}"},
    )
    assert response.status_code == 404 and "华东" not in response.text
    audit = gateway.client.get("/admin/v1/audit", headers=keys["org_admin"]).json()
    assert any(e["action"] == "database.create" and e["target"] == "acme/sales/sales" for e in audit)
