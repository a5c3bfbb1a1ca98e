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


def test_from_feedback_builds_from_this_projects_feedback_only(
    gateway: Gateway, developer: dict[str, str]
) -> None:
    from stratum.registry.responses import ServedResponse

    state = gateway.state
    state.tenancy.create_project("acme", ProjectCreate(name="other"))
    projects = {p.name: p.id for p in state.tenancy.list_projects("acme")}
    for response_id, project, question in (
        ("r-bot", "bot", "怎么退款？"),
        ("r-bot-bare", "bot", "发票怎么开？"),
        ("r-other", "other", "别的项目的问题？"),
    ):
        state.responses.remember(
            ServedResponse(
                request_id=f"req-{response_id}",
                model="客服",
                version_ref="客服@1",
                status=200,
                latency_ms=1.0,
                response_id=response_id,
                project_id=projects[project],
                prompt=[{"role": "user", "content": question}],
                answer="不知道。",
            )
        )
    state.responses.flush()
    for response_id, correction in (
        ("r-bot", "请在订单页申请退款。"),
        ("r-bot-bare", None),
        ("r-other", "机密"),
    ):
        state.feedback.submit(
            response_id=response_id,
            thumbs="down",
            correction=correction,
            is_admin=True,
            feedback_id=f"fb-{response_id}",
        )

    made = gateway.client.post(f"{BASE}/from-feedback", json={"name": "客服反馈"}, headers=developer)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["feedback"], body["corrections"], body["review"]) == (2, 1, 1)
    assert body["version"]["ref"] == "acme/bot/客服反馈@1" and body["version"]["row_count"] == 2
    rows = gateway.client.get(f"{BASE}/客服反馈/versions/1/rows", headers=developer).json()["rows"]
    texts = json_dump(rows)
    assert "请在订单页申请退款。" in texts and "机密" not in texts and "别的项目" not in texts
    queue = gateway.client.get(f"{BASE}/客服反馈/versions/1/review", headers=developer).json()
    assert len(queue) == 1

    nothing = gateway.client.post(f"{BASE}/from-feedback", json={"model": "没有这个模型"}, headers=developer)
    assert nothing.status_code == 400 and nothing.json()["error"]["code"] == "no_feedback_rows"
    naive = gateway.client.post(
        f"{BASE}/from-feedback", json={"since": "2026-01-01T00:00:00"}, headers=developer
    )
    assert naive.status_code == 400 and "time zone" in naive.json()["error"]["message"]
    viewer_key, _ = state.keys.create_key(name="v", role="viewer", project="acme/bot")
    denied = gateway.client.post(
        f"{BASE}/from-feedback", json={}, headers={"authorization": f"Bearer {viewer_key}"}
    )
    assert denied.status_code == 403
    other_key, _ = state.keys.create_key(name="o", role="developer", project="acme/other")
    sibling = gateway.client.post(
        f"{BASE}/from-feedback", json={}, headers={"authorization": f"Bearer {other_key}"}
    )
    assert sibling.status_code == 403


def json_dump(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
