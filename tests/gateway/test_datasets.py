"""The dataset admin API on a project: import with per-row errors, versions, transform, diff, review."""

from __future__ import annotations

import pytest

from stratum.governance.schemas import OrgCreate, ProjectCreate
from tests.gateway.conftest import Gateway

BASE = "/admin/v1/orgs/acme/projects/bot/datasets"


@pytest.fixture
def developer(gateway: Gateway) -> dict[str, str]:
    gateway.state.tenancy.create_org(OrgCreate(name="acme"))
    gateway.state.tenancy.create_project("acme", ProjectCreate(name="bot"))
    key, _ = gateway.state.keys.create_key(name="dev", role="developer", project="acme/bot")
    return {"authorization": f"Bearer {key}"}


def test_import_transform_diff_review(gateway: Gateway, developer: dict[str, str]) -> None:
    client = gateway.client
    rows = [
        {"instruction": "退款怎么办理？", "output": "在订单页申请退款。"},
        {"instruction": "退款怎么办理？", "output": "在订单页申请退款。"},
        {"instruction": "发票怎么开？", "output": "联系客服开发票。"},
        {"instruction": "你们几点下班", "output": "晚上六点。"},
    ]
    bad = client.post(BASE, json={"name": "faq", "rows": [*rows, {"instruction": "空"}]}, headers=developer)
    assert bad.status_code == 400
    assert "row 5, field 'output': missing" in bad.json()["error"]["message"]
    assert bad.json()["error"]["code"] == "invalid_rows"
    created = client.post(BASE, json={"name": "faq", "rows": rows}, headers=developer)
    assert created.status_code == 201, created.text
    assert created.json()["ref"] == "acme/bot/faq@1"
    made = client.post(f"{BASE}/faq/versions/1/transform", json={"steps": ["dedup"]}, headers=developer)
    assert made.status_code == 201 and made.json()[0]["report"]["dropped"] == {"exact_duplicate": 1}
    diff = client.get(f"{BASE}/faq/diff?a=1&b=2", headers=developer).json()
    assert (diff["common"], diff["removed"], diff["added"]) == (3, 0, 0)  # a duplicate is the same content
    listed = client.get(BASE, headers=developer).json()
    assert [d["name"] for d in listed] == ["faq"] and listed[0]["latest"] == 2
    page = client.get(f"{BASE}/faq/versions/latest/rows?limit=2", headers=developer).json()
    assert page["total"] == 3 and len(page["rows"]) == 2
    assert client.get(f"{BASE}/faq/versions/9", headers=developer).status_code == 404
    assert client.get(f"{BASE}/nope", headers=developer).json()["error"]["code"] == "dataset_not_found"
    bad_step = client.post(f"{BASE}/faq/versions/1/transform", json={"steps": ["nope"]}, headers=developer)
    assert bad_step.status_code == 400 and "unknown step" in bad_step.json()["error"]["message"]

    # Review: pre-label with keyword rules, decide and commit through the API.
    labelled = client.post(
        f"{BASE}/faq/versions/latest/label",
        json={"rules": {"退款": ["退款"], "发票": ["发票"]}, "threshold": 0.6},
        headers=developer,
    )
    assert labelled.status_code == 201, labelled.text
    assert labelled.json()["version"]["ref"] == "acme/bot/faq@3" and labelled.json()["queued"] == 3
    bad_rules = client.post(
        f"{BASE}/faq/versions/3/label", json={"rules": {"x": ["re:("]}}, headers=developer
    )
    assert bad_rules.status_code == 400 and "bad regex" in bad_rules.json()["error"]["message"]
    queue = client.get(f"{BASE}/faq/versions/3/review", headers=developer).json()
    assert [item["row_index"] for item in queue] == [0, 1, 2]
    early = client.post(f"{BASE}/faq/versions/3/review/commit", headers=developer)
    assert early.status_code == 409
    decisions = [
        {"row_index": 0, "decision": "accept"},
        {
            "row_index": 1,
            "decision": "edit",
            "label": "发票",
            "row": {"instruction": "怎么开发票？", "output": "联系客服。"},
        },
        {"row_index": 2, "decision": "reject"},
    ]
    decided = client.post(f"{BASE}/faq/versions/3/review", json=decisions, headers=developer)
    assert decided.status_code == 200, decided.text
    committed = client.post(f"{BASE}/faq/versions/3/review/commit", headers=developer)
    assert committed.status_code == 201
    body = committed.json()
    assert (
        body["ref"] == "acme/bot/faq@4"
        and body["row_count"] == 2
        and body["report"]["dropped"] == {"rejected": 1}
    )
    final = client.get(f"{BASE}/faq/versions/4/rows", headers=developer).json()["rows"]
    assert final[1] == {
        "instruction": "怎么开发票？",
        "input": "",
        "output": "联系客服。",
        "label": "发票",
        "confidence": 1.0,
    }


def test_viewer_reads_but_cannot_write(gateway: Gateway, developer: dict[str, str]) -> None:
    key, _ = gateway.state.keys.create_key(name="v", role="viewer", project="acme/bot")
    viewer = {"authorization": f"Bearer {key}"}
    assert gateway.client.get(BASE, headers=viewer).status_code == 200
    denied = gateway.client.post(
        BASE, json={"name": "x", "rows": [{"prompt": "问", "chosen": "好", "rejected": "坏"}]}, headers=viewer
    )
    assert denied.status_code == 403 and denied.json()["error"]["rule"] == "rbac.viewer"
