"""Prices and cost on both backends: Decimal cost on each usage record, reports summing cost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from stratum.errors import InvalidRequest, NotFound
from stratum.governance import TenancyService, UsageEntry, UsageService
from stratum.governance.audit import AuditService
from stratum.governance.prices import Price, PriceService, cost
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.storage import Database


def test_cost_is_exact_decimal() -> None:
    price = Price(model="m", input_per_1k=Decimal("0.0015"), output_per_1k=Decimal("0.002"))
    assert cost(price, prompt_tokens=1234, completion_tokens=567) == Decimal("0.002985")
    assert cost(price, prompt_tokens=0, completion_tokens=0) == Decimal("0.000000")
    with pytest.raises(ValidationError):
        Price(model="m", input_per_1k=Decimal("-1"), output_per_1k=Decimal(0))


def test_prices_cost_usage_and_reports(db: Database) -> None:
    prices = PriceService(db)
    prices.set_price(Price(model="通义-小", input_per_1k=Decimal("0.5"), output_per_1k=Decimal("1")))
    prices.set_price(
        Price(model="通义-小", input_per_1k=Decimal("1"), output_per_1k=Decimal("2")), actor="key_x"
    )
    assert prices.get_price("通义-小").input_per_1k == Decimal("1")
    assert [p.model for p in prices.list_prices()] == ["通义-小"]
    with pytest.raises(NotFound):
        prices.get_price("none")
    with pytest.raises(InvalidRequest):
        prices.set_price(Price(model="x", input_per_1k=Decimal("0.0000001"), output_per_1k=Decimal(0)))
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="acme"))
    project = tenancy.create_project("acme", ProjectCreate(name="bot"))

    def entry(model: str, prompt: int, completion: int) -> UsageEntry:
        return UsageEntry(
            request_id="r",
            key_id="key_1",
            org_id=project.org_id,
            project_id=project.id,
            model=model,
            endpoint="chat",
            prompt_tokens=prompt,
            completion_tokens=completion,
        )

    usage = UsageService(db)
    usage.record([entry("通义-小", 1500, 500), entry("通义-小", 1, 0), entry("unpriced", 100, 100)])
    report = usage.report("acme/bot", by="model")
    by_model = {line.group: line.cost for line in report.lines}
    assert by_model == {"unpriced": Decimal("0"), "通义-小": Decimal("2.501000")}
    assert report.total.cost == Decimal("2.501000")
    assert AuditService(db).verify().ok
    assert [e.action for e in AuditService(db).list_entries(actor="key_x")] == ["price.set"]
