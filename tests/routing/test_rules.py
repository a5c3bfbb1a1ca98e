"""The rule responder: keyword matching (Chinese included), ties, model globs, sandboxed templates."""

from __future__ import annotations

import pytest

from stratum.errors import InvalidRequest, NotFound
from stratum.governance.audit import AuditService
from stratum.routing.rules import RuleService, best_match
from stratum.routing.schemas import ResponderRule
from stratum.storage import Database


def _rule(name: str, keywords: list[str], **extra: object) -> ResponderRule:
    return ResponderRule(
        name=name, keywords=keywords, template=extra.pop("template", f"answer {name}"), **extra
    )  # type: ignore[arg-type]


def test_chinese_keywords_match_as_substrings_without_segmentation() -> None:
    rules = [_rule("refund", ["退款", "refund"]), _rule("hours", ["营业时间", "opening hours"])]
    assert best_match(rules, text="请问怎么申请退款？", model="m").rule.name == "refund"  # type: ignore[union-attr]
    assert best_match(rules, text="你们的营业时间是几点", model="m").rule.name == "hours"  # type: ignore[union-attr]
    assert best_match(rules, text="I want a REFUND", model="m").rule.name == "refund"  # type: ignore[union-attr]
    # Full-width letters normalise to ASCII (NFKC).
    assert best_match(rules, text="ＲＥＦＵＮＤ please", model="m") is not None
    assert best_match(rules, text="今天天气不错", model="m") is None


def test_more_keywords_win_then_priority_and_all_mode() -> None:
    rules = [
        _rule("generic", ["订单"], priority=5),
        _rule("cancel", ["订单", "取消"]),
        _rule("strict", ["发票", "抬头"], match="all"),
    ]
    assert best_match(rules, text="我想取消订单", model="m").rule.name == "cancel"  # type: ignore[union-attr]
    assert best_match(rules, text="查订单", model="m").rule.name == "generic"  # type: ignore[union-attr]
    assert best_match(rules, text="开发票", model="m") is None
    assert best_match(rules, text="发票抬头怎么改", model="m").rule.name == "strict"  # type: ignore[union-attr]


def test_model_globs_limit_a_rule() -> None:
    rules = [_rule("support-only", ["退款"], models=["support-*"])]
    assert best_match(rules, text="退款", model="support-bot") is not None
    assert best_match(rules, text="退款", model="sales-bot") is None


def test_service_renders_templates_and_records_audit(db: Database) -> None:
    service = RuleService(db)
    service.set_rule(
        _rule(
            "refund",
            ["退款"],
            intent="refund",
            template="【{{ intent }}】关于“{{ question }}”：请在订单页申请。",
        )
    )
    found = service.answer(text="怎么退款", model="bot")
    assert found is not None
    assert found[1] == "【refund】关于“怎么退款”：请在订单页申请。"
    assert [r.name for r in service.list_rules()] == ["refund"]
    service.remove_rule("refund")
    assert service.answer(text="怎么退款", model="bot") is None
    with pytest.raises(NotFound):
        service.remove_rule("refund")
    actions = [e.action for e in AuditService(db).list_entries()]
    assert actions.count("rule.set") == 1 and actions.count("rule.remove") == 1


def test_templates_are_sandboxed_and_checked(db: Database) -> None:
    service = RuleService(db)
    with pytest.raises(InvalidRequest):
        service.set_rule(_rule("bad", ["x"], template="{{ question.__class__.__mro__ }}"))
    with pytest.raises(InvalidRequest):
        service.set_rule(_rule("undefined", ["x"], template="{{ nope }}"))
    with pytest.raises(ValueError):
        _rule("blank", ["  "])
