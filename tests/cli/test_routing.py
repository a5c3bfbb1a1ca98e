"""`stratum routes|rules|queue` against a real store in a temp STRATUM_HOME."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from stratum.cli.main import app
from stratum.routing.tickets import TicketService
from stratum.settings import Settings
from stratum.storage import Database

WIDE = {"COLUMNS": "250"}  # tables unwrapped, so cells can be matched whole


def _json(runner: CliRunner, *args: str, exit_code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def test_routes_set_list_remove(runner: CliRunner) -> None:
    route = _json(
        runner,
        "routes", "set", "assistant", "--backend", "tiny", "--backend", "cloud@2,priority=1,weight=2.5",
        "--fallback", "model:backup:prod", "--fallback", "rules", "--fallback", "human",
        "--burst-queue", "4", "--trigger", "error", "--trigger", "saturation", "--timeout", "5",
    )  # fmt: skip
    assert route["backends"] == [
        {"model": "tiny", "priority": 0, "weight": 1.0},
        {"model": "cloud@2", "priority": 1, "weight": 2.5},
    ]
    assert [link["kind"] for link in route["fallback"]] == ["model", "rules", "human"]
    assert route["triggers"] == ["error", "saturation"] and route["burst_queue"] == 4
    assert [r["model"] for r in _json(runner, "routes", "list")] == ["assistant"]
    table = runner.invoke(app, ["routes", "list"], env=WIDE)
    assert "cloud@2 (p1, w2.5)" in table.output and "model:backup:prod → rules → human" in table.output
    assert runner.invoke(app, ["routes", "remove", "assistant"]).exit_code == 0
    assert _json(runner, "routes", "list") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "tiny,prio=1"], "--backend takes REF"),
        (["--backend", "tiny,priority=x"], "must be a number"),
        (["--fallback", "person"], "--fallback takes"),
        (["--fallback", "human", "--fallback", "rules"], "last link"),
        (["--trigger", "sunspots"], "trigger"),
    ],
)
def test_bad_route_input_is_one_error_line(invoke_stratum: Any, args: list[str], message: str) -> None:
    # In-process (the `routes` commands meet a subprocess in tests/e2e/test_routing_live.py).
    result = invoke_stratum("routes", "set", "assistant", *args)
    assert result.returncode != 0
    assert (
        result.stderr.startswith("error:") and message in result.stderr and "Traceback" not in result.stderr
    )


def test_rules_with_chinese_keywords(runner: CliRunner) -> None:
    rule = _json(
        runner, "rules", "set", "hours", "--keyword", "营业时间", "--keyword", "几点开门",
        "--template", "我们每天 9:00–21:00 营业。", "--intent", "hours", "--model", "support-*",
    )  # fmt: skip
    assert rule["keywords"] == ["营业时间", "几点开门"] and rule["models"] == ["support-*"]
    listed = runner.invoke(app, ["rules", "list"], env=WIDE)
    assert "营业时间, 几点开门" in listed.output
    bad = runner.invoke(app, ["rules", "set", "x", "--keyword", "a", "--template", "{{ nope }}"])
    assert bad.exit_code != 0 and "does not render" in bad.output
    assert runner.invoke(app, ["rules", "remove", "hours"]).exit_code == 0
    missing = runner.invoke(app, ["rules", "remove", "hours"])
    assert missing.exit_code != 0 and "No responder rule" in missing.output


def test_queue_list_show_answer(runner: CliRunner) -> None:
    with Database(Settings().resolved_database_url) as db:
        db.migrate()
        ticket = TicketService(db).create(
            model="bot", messages=[{"role": "user", "content": "帮我转人工"}], reason="timeout"
        )
    queued = _json(runner, "queue", "list")
    assert [(t["id"], t["question"], t["reason"]) for t in queued] == [(ticket.id, "帮我转人工", "timeout")]
    assert "帮我转人工" in runner.invoke(app, ["queue", "list"], env=WIDE).output
    answered = _json(runner, "queue", "answer", ticket.id, "好的，马上为您处理。")
    assert answered["status"] == "answered" and answered["answered_by"].startswith("cli")
    assert _json(runner, "queue", "list") == []
    assert [t["id"] for t in _json(runner, "queue", "list", "--status", "answered")] == [ticket.id]
    assert _json(runner, "queue", "show", ticket.id)["answer"] == "好的，马上为您处理。"
    again = runner.invoke(app, ["queue", "answer", ticket.id, "again"])
    assert again.exit_code != 0 and "already answered" in again.output
    assert runner.invoke(app, ["queue", "answer", ticket.id, "  "]).exit_code == 2
    assert runner.invoke(app, ["queue", "list", "--status", "closed"]).exit_code == 2
