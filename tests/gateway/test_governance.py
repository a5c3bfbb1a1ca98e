"""Governance in the request path: scopes and rules (403 naming the rule), /v1/models filtering,
quotas (429 naming the limit), settlement on disconnect, usage records, policies applied live."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from stratum.governance.policy import PolicyRule
from stratum.governance.prices import Price
from stratum.governance.schemas import Limits, OrgCreate, ProjectCreate
from tests.gateway.conftest import Gateway


def _tenant_key(gateway: Gateway, *, project: str = "acme/bot", **kwargs: object) -> str:
    org, name = project.split("/")
    tenancy = gateway.state.tenancy
    if org not in {o.name for o in tenancy.list_orgs()}:
        tenancy.create_org(OrgCreate(name=org))
    limits = kwargs.pop("project_limits", None) or {}
    if name not in {p.name for p in tenancy.list_projects(org)}:
        tenancy.create_project(org, ProjectCreate(name=name, **limits))  # type: ignore[arg-type]
    kwargs.setdefault("role", "developer")
    key, _ = gateway.state.keys.create_key(name="t", project=project, **kwargs)  # type: ignore[arg-type]
    return key


def _chat(gateway: Gateway, key: str, model: str, **extra: object):  # type: ignore[no-untyped-def]
    body = {"model": model, "messages": [{"role": "user", "content": "你好 hello"}], **extra}
    return gateway.client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


def test_model_scope_denies_other_models_naming_the_rule(gateway: Gateway) -> None:
    gateway.add_model("qwen-7b")
    key = _tenant_key(gateway, models=["qwen*"])
    assert _chat(gateway, key, "qwen-7b").status_code == 200
    assert _chat(gateway, key, "qwen-7b:latest").status_code == 200
    denied = _chat(gateway, key, "fake")
    assert denied.status_code == 403
    error = denied.json()["error"]
    assert error["type"] == "permission_error" and error["code"] == "policy_denied"
    assert error["rule"] == "key.models" and "key.models" in error["message"] and "qwen*" in error["message"]
    # A model that does not exist is denied the same way: the scope is checked before lookup.
    assert _chat(gateway, key, "no-such-model").json()["error"]["rule"] == "key.models"


def test_models_list_shows_only_usable_models(gateway: Gateway) -> None:
    gateway.add_model("qwen-7b")
    key = _tenant_key(gateway, models=["qwen*"])
    listed = gateway.client.get("/v1/models", headers={"authorization": f"Bearer {key}"}).json()
    assert [m["id"] for m in listed["data"]] == ["qwen-7b"]
    everything = gateway.client.get("/v1/models", headers=gateway.headers).json()
    assert {m["id"] for m in everything["data"]} >= {"fake", "fake-embed", "qwen-7b"}
    one = gateway.client.get("/v1/models/fake", headers={"authorization": f"Bearer {key}"})
    assert one.status_code == 403 and one.json()["error"]["rule"] == "key.models"


def test_endpoint_scope_and_viewer_role(gateway: Gateway) -> None:
    key = _tenant_key(gateway, endpoints=["embeddings"])
    denied = _chat(gateway, key, "fake")
    assert denied.status_code == 403 and denied.json()["error"]["rule"] == "key.endpoints"
    viewer = _tenant_key(gateway, role="viewer")
    denied = _chat(gateway, viewer, "fake")
    assert denied.status_code == 403 and denied.json()["error"]["rule"] == "rbac.viewer"


def test_ip_allow_list(gateway: Gateway) -> None:
    # The test client connects from "testclient", which is no IP address.
    blocked = _tenant_key(gateway, ip_allow=["10.0.0.0/8"])
    assert _chat(gateway, blocked, "fake").json()["error"]["rule"] == "key.ip_allow"


def test_editable_rule_applies_within_two_seconds(gateway: Gateway) -> None:
    key = _tenant_key(gateway)
    assert _chat(gateway, key, "fake").status_code == 200
    # Written straight to the store, as the CLI or another gateway process would.
    gateway.state.policies.put_rule(
        PolicyRule(
            name="bot-internal-only",
            projects=["acme/bot"],
            actions=["chat", "completions"],
            except_tags=["internal"],
            description="acme/bot may only use models tagged internal",
        )
    )
    deadline = time.monotonic() + 2
    while _chat(gateway, key, "fake").status_code == 200:
        assert time.monotonic() < deadline, "the new rule did not apply within 2 s"
        time.sleep(0.1)
    error = _chat(gateway, key, "fake").json()["error"]
    assert error["rule"] == "bot-internal-only" and "internal" in error["message"]
    gateway.state.registry.add_model(
        name="secret-llm",
        source="upstream",
        upstream_url="http://127.0.0.1:9/v1",
        metadata={"tags": ["internal"]},
    )
    assert _chat(gateway, key, "secret-llm").status_code == 200
    assert _chat(gateway, gateway.key, "fake").status_code == 200  # other principals are unaffected


@pytest.mark.parametrize(
    ("level", "limits", "code"),
    [
        ("project", {"project_limits": {"rpm": 2}}, "rpm_exceeded"),
        ("project", {"project_limits": {"tpm": 60}}, "tpm_exceeded"),
        ("project", {"project_limits": {"token_budget": 60}}, "token_budget_exceeded"),
        ("key", {"limits": Limits(rpm=2)}, "rpm_exceeded"),
        ("key", {"limits": Limits(token_budget=60)}, "token_budget_exceeded"),
    ],
)
def test_limits_answer_429_naming_the_limit(
    gateway: Gateway, level: str, limits: dict[str, object], code: str
) -> None:
    key = _tenant_key(gateway, **limits)
    # Worst case per request: 8 prompt characters + max_tokens 20 = 28; actual 8 + 8 = 16.
    statuses = [_chat(gateway, key, "fake", max_tokens=20).status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    refused = _chat(gateway, key, "fake", max_tokens=20)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == code
    assert error["limit"] == f"{level}.{code.removesuffix('_exceeded')}"


def test_org_limit_applies_to_all_its_projects(gateway: Gateway) -> None:
    gateway.state.tenancy.create_org(OrgCreate(name="corp", rpm=2))
    first = _tenant_key(gateway, project="corp/a")
    second = _tenant_key(gateway, project="corp/b")
    assert _chat(gateway, first, "fake").status_code == 200
    assert _chat(gateway, second, "fake").status_code == 200
    assert _chat(gateway, first, "fake").json()["error"]["limit"] == "org.rpm"


def test_usage_is_recorded_and_settled_on_disconnect(gateway: Gateway) -> None:
    key = _tenant_key(gateway, project_limits={"token_budget": 100_000})
    state = gateway.state
    project = state.tenancy.get_project("acme/bot")
    assert _chat(gateway, key, "fake", max_tokens=3).status_code == 200
    _wait(lambda: state.usage.billed_tokens(project_id=project.id) == 8 + 3)
    gateway.replies.append("长" * 400)
    gateway.delay_s = 0.01
    gateway.add_model("slow")
    payload = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "写"}]}
    headers = {"authorization": f"Bearer {key}"}
    with gateway.client.stream("POST", "/v1/chat/completions", json=payload, headers=headers) as response:
        seen = 0
        for line in response.iter_lines():
            seen += '"content":"长"' in line
            if seen == 3:
                break  # leave mid-stream
    # The abandoned stream is settled to what it produced, far below its worst case (1 + 4095).
    counter = f"project:{project.id}:tokens:"
    _wait(lambda: state.usage.billed_tokens(project_id=project.id) >= 11 + 1 + 3)
    billed = state.usage.billed_tokens(project_id=project.id)
    assert billed < 11 + 1 + 400
    _wait(lambda: _counter_total(gateway, counter) == state.usage.billed_tokens(project_id=project.id))
    report = state.usage.report("acme/bot", by="model")
    assert {line.group for line in report.lines} == {"fake", "slow"}


def _counter_total(gateway: Gateway, prefix: str) -> int:
    from sqlalchemy import func, select

    from stratum.governance.tables import CounterRow

    with gateway.state.db.session(write=False) as session:
        return int(
            session.scalar(select(func.sum(CounterRow.value)).where(CounterRow.key.startswith(prefix))) or 0
        )


def _wait(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_cost_budget_reserves_worst_cost_and_settles_actual(gateway: Gateway) -> None:
    # 1 per 1k tokens both ways: a token costs 0.001. Worst case per request 28 tokens = 0.028,
    # actual 16 tokens = 0.016 (see test_limits_answer_429_naming_the_limit).
    gateway.state.prices.set_price(Price(model="fake", input_per_1k=Decimal(1), output_per_1k=Decimal(1)))
    key = _tenant_key(gateway, project_limits={"cost_budget": Decimal("0.06")})
    statuses = [_chat(gateway, key, "fake", max_tokens=20).status_code for _ in range(3)]
    assert statuses[:2] == [200, 200]
    refused = _chat(gateway, key, "fake", max_tokens=20)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "cost_budget_exceeded" and error["limit"] == "project.cost_budget"
    assert "monthly cost budget limit is 0.06" in error["message"]
    project = gateway.state.tenancy.get_project("acme/bot")
    counter = f"project:{project.id}:cost:"

    def billed() -> Decimal:
        return gateway.state.usage.report("acme/bot").total.cost

    # Settled: the counter holds exactly the recorded costs (in millionths), within the budget.
    _wait(lambda: _counter_total(gateway, counter) == int(billed() * 1_000_000))
    assert billed() == Decimal("0.048") <= Decimal("0.06")
