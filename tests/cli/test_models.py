"""`stratum models …` against a real registry in a temp STRATUM_HOME."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stratum.cli.main import app

UPSTREAM = "http://gpu1:8000/v1"


def _ok(runner: CliRunner, *args: str, input: str | None = None) -> Any:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result


def _json(runner: CliRunner, *args: str) -> Any:
    return json.loads(_ok(runner, *args, "--json").stdout)


def _one_line_error(result: Any, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cwd" / "weights"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    return directory


def test_empty_registry(runner: CliRunner) -> None:
    assert _json(runner, "models", "list") == []
    result = _ok(runner, "models", "list")
    assert result.stdout == ""
    assert "no models registered" in result.stderr


def test_add_upstream_list_show_remove(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_KEY", "set")
    added = _json(
        runner,
        "models", "add", "qwen", "--upstream", UPSTREAM, "--upstream-model", "Qwen/Qwen2.5-7B-Instruct",
        "--api-key-env", "GPU_KEY", "--description", "通义千问：中文对话模型",
    )  # fmt: skip
    assert added["ref"] == "qwen@1"
    assert (added["source"], added["kind"], added["upstream_url"]) == ("upstream", "chat", UPSTREAM)
    assert (added["upstream_model"], added["api_key_env"]) == ("Qwen/Qwen2.5-7B-Instruct", "GPU_KEY")
    assert added["created_by"].startswith("cli")

    [listed] = _json(runner, "models", "list")
    assert listed["name"] == "qwen" and listed["description"] == "通义千问：中文对话模型"

    table = _ok(runner, "models", "list").stdout
    assert "qwen" in table and "通义千问" in table

    shown = _json(runner, "models", "show", "qwen")
    assert [v["version"] for v in shown["versions"]] == [1]
    assert shown["aliases"] == {"latest": 1}
    assert "通义千问：中文对话模型" in _ok(runner, "models", "show", "qwen").stdout

    assert _json(runner, "models", "remove", "qwen", "--yes") == {"removed": "qwen"}
    assert _json(runner, "models", "list") == []


def test_add_local_stores_an_absolute_path(runner: CliRunner, model_dir: Path) -> None:
    added = _json(runner, "models", "add", "llama-local", "--path", "weights", "--kind", "embedding")
    assert added["artifact_uri"] == str(model_dir.resolve())
    assert (added["source"], added["kind"]) == ("local", "embedding")
    assert added["metadata"]["model_type"] == "llama"
    shown = _ok(runner, "models", "show", "llama-local").stdout
    assert "model_type" in shown and "LlamaForCausalLM" in shown


def test_missing_directory_is_a_one_line_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["models", "add", "m", "--path", "no/such/dir"])
    line = _one_line_error(result)
    assert "no/such/dir" in line and "not a directory" in line


@pytest.mark.parametrize(
    "flags",
    [[], ["--path", ".", "--upstream", UPSTREAM]],
    ids=["neither", "both"],
)
def test_exactly_one_source(runner: CliRunner, flags: list[str]) -> None:
    line = _one_line_error(runner.invoke(app, ["models", "add", "m", *flags]), exit_code=2)
    assert "exactly one of --path" in line


def test_upstream_flags_need_upstream(runner: CliRunner, model_dir: Path) -> None:
    result = runner.invoke(app, ["models", "add", "m", "--path", str(model_dir), "--api-key-env", "K"])
    assert "only apply with --upstream" in _one_line_error(result, exit_code=2)


def test_unset_key_variable_warns(runner: CliRunner) -> None:
    result = _ok(runner, "models", "add", "m", "--upstream", UPSTREAM, "--api-key-env", "STRATUM_TEST_UNSET")
    assert "warning: STRATUM_TEST_UNSET is not set" in result.stderr


def test_service_validation_is_one_line(runner: CliRunner) -> None:
    line = _one_line_error(runner.invoke(app, ["models", "add", "m", "--upstream", "ftp://x"]))
    assert "http(s) URL" in line


def test_unknown_model(runner: CliRunner) -> None:
    _ok(runner, "models", "add", "known", "--upstream", UPSTREAM)
    line = _one_line_error(runner.invoke(app, ["models", "show", "x"]))
    assert line == "error: The model 'x' does not exist. Available models: known."
    _one_line_error(runner.invoke(app, ["models", "remove", "x", "--yes"]))


def test_versions_and_aliases(runner: CliRunner) -> None:
    for _ in range(2):
        _ok(runner, "models", "add", "m", "--upstream", UPSTREAM)
    target = _json(runner, "models", "alias", "m", "prod", "1")
    assert target["ref"] == "m@1" and "prod" in target["aliases"]
    assert _json(runner, "models", "show", "m")["aliases"] == {"latest": 2, "prod": 1}
    assert "m:prod → m@1" in _ok(runner, "models", "alias", "m", "prod", "1").stdout

    # A version an alias serves cannot go; the registry says why in one line.
    assert "prod" in _one_line_error(runner.invoke(app, ["models", "remove", "m@1", "--yes"]))
    _ok(runner, "models", "unalias", "m", "prod")
    assert _json(runner, "models", "remove", "m@1", "--yes") == {"removed": "m@1"}
    assert [v["version"] for v in _json(runner, "models", "show", "m")["versions"]] == [2]


def test_bad_version_in_ref(runner: CliRunner) -> None:
    result = runner.invoke(app, ["models", "remove", "m@latest", "--yes"])
    assert "a version must be a number" in _one_line_error(result, exit_code=2)


def test_remove_asks_first(runner: CliRunner) -> None:
    _ok(runner, "models", "add", "m", "--upstream", UPSTREAM)
    declined = runner.invoke(app, ["models", "remove", "m"], input="n\n")
    assert declined.exit_code == 1
    assert "error: nothing removed" in declined.stderr
    assert len(_json(runner, "models", "list")) == 1

    accepted = _ok(runner, "models", "remove", "m", input="y\n")
    assert "Remove m" in accepted.stderr  # the question goes to stderr, not into piped output
    assert "removed m" in accepted.stdout
    assert _json(runner, "models", "list") == []


def test_add_adapter_on_a_base(runner: CliRunner, model_dir: Path, tmp_path: Path) -> None:
    _ok(runner, "models", "add", "qwen-mini", "--path", str(model_dir))
    adapter = tmp_path / "bot"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 2, "lora_alpha": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    added = _json(runner, "models", "add", "support-bot", "--adapter", str(adapter), "--base", "qwen-mini@1")
    assert (added["ref"], added["variant"], added["metadata"]["base"]) == (
        "support-bot@1",
        "adapter",
        "qwen-mini@1",
    )
    assert "adapter on qwen-mini@1" in _ok(runner, "models", "add", "support-bot", "--adapter", str(adapter),
                                          "--base", "qwen-mini").stdout  # fmt: skip
    assert "go together" in _one_line_error(
        runner.invoke(app, ["models", "add", "x", "--adapter", str(adapter)]), exit_code=2
    )
    assert "has no adapter_config.json" in _one_line_error(
        runner.invoke(app, ["models", "add", "x", "--adapter", str(model_dir), "--base", "qwen-mini@1"])
    )
    assert "not exist" in _one_line_error(
        runner.invoke(app, ["models", "add", "x", "--adapter", str(adapter), "--base", "nope@1"])
    )
