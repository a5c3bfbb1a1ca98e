"""The installed `stratum` console script in a real subprocess, state in a temp STRATUM_HOME."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from stratum import __version__

# The run_stratum and fake_openai fixtures live in conftest.py.
Run = Any


def _ok(run: Run, *args: str) -> subprocess.CompletedProcess[str]:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    return result


def _json(run: Run, *args: str) -> Any:
    return json.loads(_ok(run, *args, "--json").stdout)


def test_help(run_stratum: Run) -> None:
    result = _ok(run_stratum, "--help")
    for name in ("version", "serve", "chat", "models", "keys"):
        assert name in result.stdout


def test_version_json(run_stratum: Run) -> None:
    assert _json(run_stratum, "version")["version"] == __version__


def test_python_dash_m(stratum_home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stratum", "version", "--json"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "stratum"


def test_models_round_trip_with_chinese(run_stratum: Run, stratum_home: Path) -> None:
    description = "深度求索：中文推理模型"
    added = _json(
        run_stratum, "models", "add", "deepseek", "--upstream", "https://api.example.cn/v1",
        "--upstream-model", "deepseek-chat", "--description", description,
    )  # fmt: skip
    assert added["ref"] == "deepseek@1"
    assert (stratum_home / "stratum.db").exists()

    [listed] = _json(run_stratum, "models", "list")
    assert (listed["name"], listed["description"]) == ("deepseek", description)
    assert listed["versions"][0]["upstream_model"] == "deepseek-chat"

    shown = _ok(run_stratum, "models", "show", "deepseek").stdout
    assert description in shown and "https://api.example.cn/v1" in shown

    _ok(run_stratum, "models", "remove", "deepseek", "--yes")
    assert _json(run_stratum, "models", "list") == []


def test_missing_model_directory(run_stratum: Run) -> None:
    result = run_stratum("models", "add", "m", "--path", "/no/such/模型")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == ["error: Model path '/no/such/模型' is not a directory."]


def test_keys_create_list_revoke(run_stratum: Run) -> None:
    created = _ok(run_stratum, "keys", "create", "--name", "运维")
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sk-") and "shown only once" in created.stderr

    [listed] = _json(run_stratum, "keys", "list")
    assert listed["name"] == "运维" and listed["status"] == "active"
    assert key not in json.dumps(listed)

    _ok(run_stratum, "keys", "revoke", listed["id"])
    assert _json(run_stratum, "keys", "list")[0]["status"] == "revoked"


def test_chat_message_streams_the_reply(run_stratum: Run, fake_openai: Any) -> None:
    result = run_stratum("chat", "演示", "--base-url", fake_openai.url, "--api-key", fake_openai.api_key,
                         "--message", "你好")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == fake_openai.reply + "\n"


def test_chat_errors(run_stratum: Run, fake_openai: Any, unused_url: str) -> None:
    denied = run_stratum("chat", "m", "--base-url", fake_openai.url, "--api-key", "sk-bad", "-m", "hi")
    assert denied.returncode == 1
    assert denied.stderr == "error: Invalid API key provided. (invalid_api_key, HTTP 401)\n"

    unreachable = run_stratum("chat", "m", "--base-url", unused_url, "-m", "hi")
    assert unreachable.returncode != 0
    assert "Traceback" not in unreachable.stderr
    assert f"isn't reachable at {unused_url}" in unreachable.stderr
