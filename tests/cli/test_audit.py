"""`stratum audit verify|list` against a real store in a temp STRATUM_HOME."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from stratum.cli.main import app
from stratum.governance.audit import entry_hash
from stratum.governance.tables import AuditRow
from stratum.settings import Settings
from stratum.storage import Database


def _json(runner: CliRunner, *args: str, exit_code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def test_verify_and_list_then_detect_tampering(runner: CliRunner) -> None:
    _json(runner, "orgs", "create", "研发")
    _json(runner, "projects", "create", "研发/客服", "--token-budget", "1000")
    assert _json(runner, "audit", "verify") == {
        "ok": True,
        "count": 2,
        "broken_id": None,
        "reason": None,
        "checkpoint_id": None,
    }
    plain = runner.invoke(app, ["audit", "verify"])
    assert plain.exit_code == 0 and "OK: 2 audit entries" in plain.output
    entries = _json(runner, "audit", "list", "--since", "1d")
    assert [e["action"] for e in entries] == ["project.create", "org.create"]
    assert entries[0]["target"] == "研发/客服" and entries[0]["actor"].startswith("cli")
    assert _json(runner, "audit", "list", "--actor", "nobody") == []
    assert "研发/客服" in runner.invoke(app, ["audit", "list"]).output

    with Database(Settings().resolved_database_url) as db, db.session() as session:
        session.execute(text("UPDATE audit_log SET target = '研发/别的' WHERE id = 2"))
    broken = _json(runner, "audit", "verify", exit_code=1)
    assert broken["ok"] is False and broken["broken_id"] == 2
    plain = runner.invoke(app, ["audit", "verify"])
    assert plain.exit_code == 1 and "BROKEN at entry 2" in plain.output


def test_list_rejects_a_bad_since(runner: CliRunner) -> None:
    result = runner.invoke(app, ["audit", "list", "--since", "yesterday"])
    assert result.exit_code == 2


def test_prices_and_usage_cost_csv(runner: CliRunner) -> None:
    from stratum.governance import TenancyService, UsageEntry, UsageService
    from stratum.governance.schemas import OrgCreate, ProjectCreate

    assert _json(runner, "prices", "set", "通义-小", "--input", "0.5", "--output", "1.25") == {
        "model": "通义-小",
        "input_per_1k": "0.5",
        "output_per_1k": "1.25",
    }
    assert [p["model"] for p in _json(runner, "prices", "list")] == ["通义-小"]
    bad = runner.invoke(app, ["prices", "set", "m", "--input", "abc", "--output", "1"])
    assert bad.exit_code == 2
    with Database(Settings().resolved_database_url) as db:
        db.migrate()
        TenancyService(db).create_org(OrgCreate(name="研发"))
        project = TenancyService(db).create_project("研发", ProjectCreate(name="客服"))
        UsageService(db).record(
            [
                UsageEntry(
                    request_id="r1",
                    key_id="key_1",
                    org_id=project.org_id,
                    project_id=project.id,
                    model="通义-小",
                    endpoint="chat",
                    prompt_tokens=2000,
                    completion_tokens=400,
                )
            ]
        )
    report = _json(runner, "usage", "研发/客服")
    assert report["total"]["cost"] == "1.500000"
    result = runner.invoke(app, ["usage", "研发/客服", "--csv"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "model,requests,prompt_tokens,completion_tokens,total_tokens,cost",
        "通义-小,1,2000,400,2400,1.500000",
        "total,1,2000,400,2400,1.500000",
    ]
    table = runner.invoke(app, ["usage", "研发/客服", "--by", "day"])
    assert "1.500000" in table.output
    assert [e["action"] for e in _json(runner, "audit", "list")][-1] == "price.set"


def test_prune_keeps_verify_working(runner: CliRunner) -> None:
    _json(runner, "orgs", "create", "旧组织")
    with Database(Settings().resolved_database_url) as db, db.session() as session:
        # Age the first entry by a year and re-hash it, as if it had been written then.
        row = session.get(AuditRow, 1)
        assert row is not None
        row.at = row.at.replace(year=row.at.year - 1)
        row.hash = entry_hash(row)
    _json(runner, "orgs", "create", "新组织")
    pruned = _json(runner, "audit", "prune", "--older-than", "30")
    assert pruned["pruned"] == 1 and pruned["through_id"] == 1
    verified = _json(runner, "audit", "verify")
    assert verified["ok"] is True and verified["checkpoint_id"] == 1 and verified["count"] == 2
    plain = runner.invoke(app, ["audit", "verify"])
    assert plain.exit_code == 0 and "since the prune checkpoint at entry 1" in plain.output
    assert [e["action"] for e in _json(runner, "audit", "list")] == ["audit.prune", "org.create"]


def test_prune_needs_a_retention(runner: CliRunner) -> None:
    result = runner.invoke(app, ["audit", "prune"])
    assert result.exit_code == 2 and "--older-than" in result.output
    assert _json(runner, "audit", "prune", "--older-than", "30")["pruned"] == 0
