"""`stratum keys …` against a real key store in a temp STRATUM_HOME."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from typer.testing import CliRunner

from stratum.cli.main import app


def _json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_prints_the_key_once_with_a_warning(runner: CliRunner) -> None:
    result = runner.invoke(app, ["keys", "create", "--name", "数据团队"])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-")
    assert "数据团队" in result.stdout
    assert "shown only once" in result.stderr

    listing = runner.invoke(app, ["keys", "list"])
    assert listing.exit_code == 0
    assert "数据团队" in listing.stdout
    assert key not in listing.stdout  # never again
    assert key not in json.dumps(_json(runner, "keys", "list"))


def test_create_json_and_list_json(runner: CliRunner) -> None:
    created = _json(runner, "keys", "create", "--name", "ci", "--role", "admin", "--expires-days", "7")
    assert created["key"].startswith("sk-")
    assert (created["name"], created["role"], created["status"]) == ("ci", "admin", "active")
    expires = datetime.fromisoformat(created["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=5)

    [listed] = _json(runner, "keys", "list")
    assert "key" not in listed
    assert listed["id"] == created["id"] and listed["prefix"] == created["prefix"]


def test_default_name_and_role(runner: CliRunner) -> None:
    created = _json(runner, "keys", "create")
    assert created["name"].startswith("cli") and created["role"] == "user"
    assert created["expires_at"] is None


def test_revoke(runner: CliRunner) -> None:
    created = _json(runner, "keys", "create", "--name", "temp")
    result = runner.invoke(app, ["keys", "revoke", created["id"]])
    assert result.exit_code == 0, result.output
    assert f"revoked key {created['id']}" in result.stdout
    [listed] = _json(runner, "keys", "list")
    assert listed["status"] == "revoked" and listed["revoked_at"] is not None
    # Revoking again is safe, and the prefix works as well as the id.
    assert _json(runner, "keys", "revoke", created["prefix"])["status"] == "revoked"


def test_revoke_unknown_is_one_line(runner: CliRunner) -> None:
    result = runner.invoke(app, ["keys", "revoke", "key_nope"])
    assert result.exit_code == 1
    assert result.stderr == "error: No API key has the id or prefix 'key_nope'.\n"


def test_bad_role_and_expiry(runner: CliRunner) -> None:
    for args in (["--role", "root"], ["--expires-days", "0"]):
        result = runner.invoke(app, ["keys", "create", *args])
        assert result.exit_code == 2
        assert result.stderr.startswith("error: Invalid value for")
        assert len(result.stderr.splitlines()) == 1


def test_empty_list(runner: CliRunner) -> None:
    assert _json(runner, "keys", "list") == []
    result = runner.invoke(app, ["keys", "list"])
    assert result.exit_code == 0 and "no API keys yet" in result.stderr
