"""`stratum chat` against a fake OpenAI-compatible SSE server on a local port (see conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from stratum.cli.main import app

# The fake_openai fixture's type lives in conftest.py, which test modules do not import.
Fake = Any


def _chat(runner: CliRunner, fake: Fake, *args: str, input: str | None = None, key: str | None = None) -> Any:
    return runner.invoke(
        app, ["chat", *args, "--base-url", fake.url, "--api-key", key or fake.api_key], input=input
    )


def test_message_streams_the_chinese_reply(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "演示模型", "--message", "你好吗？", "--system", "用中文回答")
    assert result.exit_code == 0, result.output
    assert result.stdout == fake_openai.reply + "\n"
    assert fake_openai.requests == [
        {
            "model": "演示模型",
            "messages": [
                {"role": "system", "content": "用中文回答"},
                {"role": "user", "content": "你好吗？"},
            ],
            "stream": True,
        }
    ]


def test_sampling_flags_are_sent_and_a_cut_reply_is_noted(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "m", "-m", "hi", "--temperature", "0.2", "--max-tokens", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout == "".join(fake_openai.deltas[:2]) + "\n"
    assert "token limit" in result.stderr
    assert fake_openai.requests[0]["temperature"] == 0.2
    assert fake_openai.requests[0]["max_tokens"] == 2


def test_message_from_stdin(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "m", "--message", "-", input="从标准输入读取\n")
    assert result.exit_code == 0, result.output
    assert fake_openai.requests[0]["messages"] == [{"role": "user", "content": "从标准输入读取\n"}]


def test_api_key_from_the_environment(
    runner: CliRunner, fake_openai: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    monkeypatch.setenv("STRATUM_API_KEY", fake_openai.api_key)  # wins over OPENAI_API_KEY
    result = runner.invoke(app, ["chat", "m", "--base-url", fake_openai.url, "-m", "hi"])
    assert result.exit_code == 0, result.output
    assert result.stdout == fake_openai.reply + "\n"


def test_default_base_url_comes_from_settings(
    runner: CliRunner, fake_openai: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATUM_PORT", fake_openai.url.split(":")[-1].removesuffix("/v1"))
    result = runner.invoke(app, ["chat", "m", "--api-key", fake_openai.api_key, "-m", "hi"])
    assert result.exit_code == 0, result.output
    assert result.stdout == fake_openai.reply + "\n"


def test_conversation_keeps_history_until_exit(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "m", input="第一句\n\n第二句\n/exit\n不会发送\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == (fake_openai.reply + "\n") * 2
    assert [r["messages"] for r in fake_openai.requests] == [
        [{"role": "user", "content": "第一句"}],
        [
            {"role": "user", "content": "第一句"},
            {"role": "assistant", "content": fake_openai.reply},
            {"role": "user", "content": "第二句"},
        ],
    ]


def test_clear_forgets_and_eof_quits(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "m", input="一\n/clear\n二\n")  # no /exit: EOF (Ctrl-D) ends
    assert result.exit_code == 0, result.output
    assert fake_openai.requests[1]["messages"] == [{"role": "user", "content": "二"}]


def test_bad_key_is_a_one_line_error(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "m", "-m", "hi", key="sk-wrong")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: Invalid API key provided. (invalid_api_key, HTTP 401)\n"


def test_unknown_model_ends_the_interactive_session(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "missing", input="hi\nagain\n")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: The model 'missing' does not exist. (model_not_found, HTTP 404)"
    ]
    assert len(fake_openai.requests) == 1


def test_error_inside_the_stream(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "broken", "-m", "hi")
    assert result.exit_code == 1
    assert result.stdout == fake_openai.deltas[0] + "\n"
    assert "error: engine crashed" in result.stderr
    assert "Traceback" not in result.output


def test_server_that_does_not_stream(runner: CliRunner, fake_openai: Fake) -> None:
    result = _chat(runner, fake_openai, "plain", "-m", "hi")
    assert result.exit_code == 0, result.output
    assert result.stdout == fake_openai.reply + "\n"


def test_unreachable_server(runner: CliRunner, unused_url: str) -> None:
    result = runner.invoke(app, ["chat", "m", "--base-url", unused_url, "-m", "hi"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: the server isn't reachable at {unused_url}")
    assert "stratum serve" in lines[0]


def test_empty_message_is_refused(runner: CliRunner, unused_url: str) -> None:
    result = runner.invoke(app, ["chat", "m", "--base-url", unused_url, "-m", "  "])
    assert result.exit_code == 1
    assert result.stderr == "error: the message is empty\n"
