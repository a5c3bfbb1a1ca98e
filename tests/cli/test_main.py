"""The root command: help, version, `serve`, and failures rendered as one line."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stratum import __version__
from stratum.cli.main import app
from stratum.settings import Settings

COMMANDS = [
    [],
    ["version"],
    ["serve"],
    ["chat"],
    ["models"],
    ["models", "list"],
    ["models", "add"],
    ["models", "show"],
    ["models", "alias"],
    ["models", "unalias"],
    ["models", "remove"],
    ["keys"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
]


def test_help_lists_every_group(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("version", "serve", "chat", "models", "keys"):
        assert name in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"stratum {__version__} (Python ")
    assert runner.invoke(app, ["--version"]).stdout == f"stratum {__version__}\n"


def test_version_json(runner: CliRunner) -> None:
    result = runner.invoke(app, ["version", "--json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert set(info) == {"name", "version", "python", "platform"}
    assert info["name"] == "stratum" and info["version"] == __version__


def test_unknown_command_is_one_line(runner: CliRunner) -> None:
    result = runner.invoke(app, ["modles"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: No such command 'modles'")
    assert "'models'" in result.stderr  # the suggestion
    assert len(result.stderr.splitlines()) == 1


def test_bad_option_value_is_one_line(runner: CliRunner) -> None:
    result = runner.invoke(app, ["models", "add", "m", "--upstream", "http://x/v1", "--kind", "image"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--kind'")
    assert result.stderr.rstrip().endswith("(see 'stratum models add --help')")
    assert len(result.stderr.splitlines()) == 1


def test_bad_setting_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUM_PORT", "not-a-port")
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid setting STRATUM_PORT: Input should be a valid integer")
    assert len(result.stderr.splitlines()) == 1


def test_unsupported_database_url_is_one_line(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUM_DATABASE_URL", "mysql://db/stratum")
    result = runner.invoke(app, ["keys", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: Unsupported database URL")
    assert len(result.stderr.splitlines()) == 1


def test_database_error_is_one_line(runner: CliRunner, stratum_home: Path) -> None:
    stratum_home.mkdir()
    (stratum_home / "stratum.db").write_bytes(b"this is not a SQLite file " * 100)
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database: ")
    assert len(result.stderr.splitlines()) == 1


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace the gateway with a recorder, so `serve` is tested without FastAPI, torch or a port."""
    calls: list[Settings] = []
    module: Any = types.ModuleType("stratum.gateway.server")
    module.serve = calls.append
    monkeypatch.setitem(sys.modules, "stratum.gateway.server", module)
    return calls


def test_serve_overrides_host_and_port(runner: CliRunner, served: list[Settings], stratum_home: Any) -> None:
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--port", "9123"])
    assert result.exit_code == 0, result.output
    [settings] = served
    assert (settings.host, settings.port) == ("0.0.0.0", 9123)
    assert settings.home == stratum_home


def test_serve_defaults_come_from_the_environment(
    runner: CliRunner, served: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUM_PORT", "8765")
    assert runner.invoke(app, ["serve"]).exit_code == 0
    assert (served[0].host, served[0].port) == ("127.0.0.1", 8765)


def test_serve_rejects_a_bad_port(runner: CliRunner, served: list[Settings]) -> None:
    result = runner.invoke(app, ["serve", "--port", "70000"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--port'")
    assert served == []
