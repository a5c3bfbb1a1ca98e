"""Stored routes (validation, audit) and hand-off tickets (ownership, answering once)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stratum.errors import Conflict, NotFound
from stratum.governance.audit import AuditService
from stratum.routing.routes import RouteService
from stratum.routing.schemas import Route
from stratum.routing.tickets import TicketService
from stratum.storage import Database


def test_routes_round_trip_and_are_audited(db: Database) -> None:
    service = RouteService(db)
    route = Route.model_validate(
        {
            "model": "assistant",
            "backends": [{"model": "tiny"}, {"model": "cloud@2", "priority": 1, "weight": 3}],
            "fallback": [{"kind": "model", "target": "backup:prod"}, {"kind": "rules"}, {"kind": "human"}],
            "burst_queue": 2,
        }
    )
    saved = service.set_route(route)
    assert saved.backends[1].model == "cloud@2" and saved.backends[1].weight == 3
    assert [link.label for link in saved.fallback] == ["model:backup:prod", "rules", "human"]
    assert saved.triggers == ["error", "timeout", "saturation", "content_blocked"]
    assert service.find("assistant") == saved
    service.set_route(Route(model="assistant"))
    assert service.get_route("assistant").backends == []
    service.remove_route("assistant")
    assert service.find("assistant") is None
    with pytest.raises(NotFound):
        service.remove_route("assistant")
    actions = [e.action for e in AuditService(db).list_entries()]
    assert actions.count("route.set") == 2 and "route.remove" in actions


@pytest.mark.parametrize(
    "fallback",
    [
        [{"kind": "human"}, {"kind": "rules"}],  # human must be last
        [{"kind": "rules"}, {"kind": "rules"}],
        [{"kind": "model"}],  # a model link names its model
        [{"kind": "rules", "target": "x"}],
    ],
)
def test_invalid_chains_are_rejected(fallback: list[dict[str, str]]) -> None:
    with pytest.raises(ValidationError):
        Route.model_validate({"model": "m", "fallback": fallback})


def test_tickets_belong_to_their_project_and_are_answered_once(db: Database) -> None:
    service = TicketService(db)
    messages = [{"role": "system", "content": "客服"}, {"role": "user", "content": "我要投诉，转人工"}]
    ticket = service.create(model="bot", messages=messages, reason="error", project_id="p1", key_id="k1")
    assert ticket.status == "open" and ticket.question == "我要投诉，转人工"
    assert service.get(ticket.id, project_id="p1", key_id="k9").id == ticket.id
    with pytest.raises(NotFound):
        service.get(ticket.id, project_id="p2", key_id="k1")
    assert [t.id for t in service.list(status="open")] == [ticket.id]
    answered = service.answer(ticket.id, "您好，已为您处理。", actor="operator")
    assert answered.status == "answered" and answered.answer == "您好，已为您处理。"
    assert answered.answered_by == "operator" and answered.answered_at is not None
    assert service.list(status="open") == []
    with pytest.raises(Conflict):
        service.answer(ticket.id, "again")
    with pytest.raises(NotFound):
        service.answer("tkt_missing", "x")


def test_a_keys_ticket_without_project_is_only_its_own(db: Database) -> None:
    service = TicketService(db)
    ticket = service.create(
        model="bot", messages=[{"role": "user", "content": "hi"}], reason="timeout", key_id="k1"
    )
    assert service.get(ticket.id, project_id=None, key_id="k1").reason == "timeout"
    with pytest.raises(NotFound):
        service.get(ticket.id, project_id=None, key_id="k2")
