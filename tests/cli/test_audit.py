"""`stratum audit verify|list` against a real store in a temp STRATUM_HOME."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from stratum.cli.main import app
from stratum.settings import Settings
from stratum.storage import Database


def _json(runner: CliRunner, *args: str, exit_code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def test_verify_and_list_then_detect_tampering(runner: CliRunner) -> None:
    _json(runner, "orgs", "create", "研发")
    _json(runner, "projects", "create", "研发/客服", "--token-budget", "1000")
    assert _json(runner, "audit", "verify") == {"ok": True, "count": 2, "broken_id": None, "reason": None}
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
