"""The policy evaluator: scopes, tenancy, editable rules, role grants; every denial names its rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stratum.governance.policy import Check, PolicyRule, evaluate
from stratum.governance.schemas import Principal, Tenant

ORG = Tenant(id="org_1", name="acme")
PROJECT = Tenant(id="prj_1", name="acme/bot")


def _principal(role: str = "developer", **kwargs: object) -> Principal:
    return Principal(key_id="key_1", name="k", role=role, org=ORG, project=PROJECT, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("principal", "check", "allowed", "rule"),
    [
        (_principal(), Check("chat", model="qwen-7b"), True, "rbac.developer"),
        (_principal(models=("qwen*",)), Check("chat", model="llama"), False, "key.models"),
        (_principal(endpoints=("embeddings",)), Check("chat", model="m"), False, "key.endpoints"),
        (_principal(ip_allow=("10.0.0.0/8",)), Check("chat", ip="10.1.2.3"), True, "rbac.developer"),
        (_principal(ip_allow=("10.0.0.0/8",)), Check("chat", ip="192.168.0.1"), False, "key.ip_allow"),
        (_principal("viewer"), Check("chat", model="m"), False, "rbac.viewer"),
        (_principal("viewer"), Check("usage.read", org_id="org_1", project_id="prj_1"), True, "rbac.viewer"),
        (_principal(), Check("usage.read", org_id="org_1", project_id="prj_2"), False, "tenancy.project"),
        (
            _principal("org_admin"),
            Check("keys.write", org_id="org_1", project_id="prj_2"),
            True,
            "rbac.org_admin",
        ),
        (_principal("org_admin"), Check("keys.write", org_id="org_2"), False, "tenancy.org"),
        (_principal("org_admin"), Check("orgs.write"), False, "rbac.org_admin"),
        (
            Principal(key_id="a", name="a", role="admin"),
            Check("orgs.write", org_id="org_9"),
            True,
            "rbac.admin",
        ),
    ],
)
def test_decisions(principal: Principal, check: Check, allowed: bool, rule: str) -> None:
    decision = evaluate(principal, check, [])
    assert (decision.allowed, decision.rule) == (allowed, rule)


def test_tag_rule_denies_untagged_models_and_allow_rule_grants() -> None:
    internal_only = PolicyRule(
        name="bot-internal", projects=["acme/bot"], actions=["chat"], except_tags=["internal"]
    )
    untagged = evaluate(_principal(), Check("chat", model="gpt"), [internal_only])
    assert (untagged.allowed, untagged.rule) == (False, "bot-internal")
    tagged = evaluate(
        _principal(), Check("chat", model="x", model_tags=frozenset({"internal"})), [internal_only]
    )
    assert tagged.allowed
    viewers_chat = PolicyRule(name="viewers-chat", effect="allow", roles=["viewer"], actions=["chat"])
    assert evaluate(_principal("viewer"), Check("chat", model="m"), [viewers_chat]).rule == "viewers-chat"


def test_rules_cannot_take_builtin_names() -> None:
    with pytest.raises(ValidationError):
        PolicyRule(name="key.models")
