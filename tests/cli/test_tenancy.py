"""`stratum orgs|projects|keys ORG/PROJECT|usage` against a real store in a temp STRATUM_HOME."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from stratum.cli.main import app


def _json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_org_project_key_usage_flow(runner: CliRunner) -> None:
    assert _json(runner, "orgs", "create", "研发")["name"] == "研发"
    project = _json(
        runner,
        "projects",
        "create",
        "研发/客服",
        "--token-budget",
        "1000",
        "--cost-budget",
        "50.5",
        "--rpm",
        "60",
    )
    assert (project["path"], project["token_budget"], project["rpm"]) == ("研发/客服", 1000, 60)
    assert project["cost_budget"] == "50.5"
    key = _json(runner, "keys", "create", "研发/客服", "--models", "qwen*,glm*", "--role", "viewer")
    assert key["key"].startswith("sk-stm-") and key["project"] == "研发/客服"
    assert (key["role"], key["models"]) == ("viewer", ["qwen*", "glm*"])
    # Today's platform keys still work without ORG/PROJECT.
    platform = _json(runner, "keys", "create", "--name", "ops")
    assert (platform["role"], platform["project"]) == ("user", None)
    report = _json(runner, "usage", "研发/客服", "--by", "day", "--since", "7d")
    assert report["lines"] == [] and report["total"]["total_tokens"] == 0
    limits = _json(runner, "projects", "limits", "研发/客服", "--tpm", "500")
    assert (limits["tpm"], limits["token_budget"]) == (500, 1000)


def test_bad_input_is_one_line(runner: CliRunner) -> None:
    runner.invoke(app, ["orgs", "create", "acme"])
    cases = [
        (["orgs", "create", "acme"], "already exists"),
        (["orgs", "create", "a/b"], "names need"),
        (["projects", "create", "acme"], "expected ORG/PROJECT"),
        (["projects", "create", "nope/x"], "No organisation named 'nope'"),
        (["projects", "create", "acme/x", "--cost-budget", "lots"], "--cost-budget takes an amount"),
        (["keys", "create", "acme/missing"], "No project 'acme/missing'"),
        (["keys", "create", "--role", "developer"], "belongs to a project"),
        (["usage", "acme/x", "--since", "yesterday"], "--since takes"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, lines)
