"""`stratum deploy …` and `stratum ab …` against a real store (the controller is tested elsewhere)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from stratum.cli.deploy import parse_duration
from stratum.cli.main import app
from stratum.cli.output import CliError


def _json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def bot(runner: CliRunner) -> None:
    for port in (9, 8, 7):
        result = runner.invoke(app, ["models", "add", "bot", "--upstream", f"http://127.0.0.1:{port}/v1"])
        assert result.exit_code == 0, result.output


def test_canary_lifecycle(runner: CliRunner, bot: None) -> None:
    started = _json(
        runner,
        "deploy",
        "bot",
        "--candidate",
        "3",
        "--steps",
        "10,40,100",
        "--interval",
        "90s",
        "--max-p99-ms",
        "150",
        "--min-samples",
        "7",
    )
    assert started["weights"] == {"bot@2": 90.0, "bot@3": 10.0} and started["interval_s"] == 90
    assert started["thresholds"]["p99_ms"] == 150 and started["thresholds"]["min_samples"] == 7
    plain = runner.invoke(app, ["deploy", "status", "bot"])
    assert plain.exit_code == 0 and "bot@2 90%, bot@3 10%" in plain.output and "next: wait" in plain.output
    status = _json(runner, "deploy", "status", "bot")
    assert status["verdict"]["action"] == "wait" and status["verdict"]["candidate"]["requests"] == 0
    assert [d["name"] for d in _json(runner, "deploy", "list")] == ["bot"]
    busy = runner.invoke(app, ["deploy", "bot", "--candidate", "1"])
    assert busy.exit_code == 1 and "already running" in busy.output
    promoted = _json(runner, "deploy", "promote", "bot")
    assert promoted["status"] == "promoted" and promoted["weights"] == {"bot@3": 100.0}
    history = runner.invoke(app, ["deploy", "history", "bot"])
    assert history.exit_code == 0
    assert "canary_started" in history.output and "why: manual promotion" in history.output
    assert [e["action"] for e in _json(runner, "deploy", "history", "bot")] == ["canary_started", "promoted"]
    stopped = runner.invoke(app, ["deploy", "stop", "bot"])
    assert stopped.exit_code == 0 and "registry default alias" in stopped.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "bot", "--candidate", "3", "--steps", "5,x"], "comma-separated numbers"),
        (["deploy", "bot", "--candidate", "3", "--steps", "50,20,100"], "steps must increase"),
        (["deploy", "bot", "--candidate", "3", "--interval", "soon"], "--interval takes a duration"),
        (["deploy", "bot", "--candidate", "3", "--max-error-rate", "2"], "invalid threshold"),
        (["deploy", "bot", "--candidate", "9"], "does not exist"),
        (["deploy", "nobody", "--candidate", "1"], "does not exist"),
        (["deploy", "status", "bot"], "There is no deployment 'bot'"),
        (["deploy", "rollback", "bot"], "There is no deployment 'bot'"),
        (["ab", "start", "bot", "--arms", "1=50,2"], "VERSION=PERCENT"),
        (["ab", "start", "bot", "--arms", "1=50,2=40"], "add up to 90"),
        (["ab", "report", "bot"], "There is no deployment 'bot'"),
    ],
)
def test_bad_input_is_one_error_line(runner: CliRunner, bot: None, args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and result.output.startswith("error: "), result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_ab_start_and_report_without_feedback(runner: CliRunner, bot: None) -> None:
    started = _json(runner, "ab", "start", "bot", "--arms", "1=30,bot@2=70")
    assert started["weights"] == {"bot@1": 30.0, "bot@2": 70.0} and started["mode"] == "ab"
    report = _json(runner, "ab", "report", "bot")
    assert report["p_value"] is None and "not enough feedback" in report["note"]
    text = runner.invoke(app, ["ab", "report", "bot"])
    assert text.exit_code == 0 and "A (30%)" in text.output and "not enough feedback" in text.output
    rollback = runner.invoke(app, ["deploy", "rollback", "bot"])
    assert rollback.exit_code == 1 and "not a running canary" in rollback.output


def test_parse_duration() -> None:
    assert parse_duration("10m", option="-") == 600 and parse_duration("1.5h", option="-") == 5400
    assert parse_duration("500ms", option="-") == 0.5 and parse_duration("42", option="-") == 42
    for bad in ("0s", "-1m", "10 minutes", ""):
        with pytest.raises(CliError):
            parse_duration(bad, option="--interval")
