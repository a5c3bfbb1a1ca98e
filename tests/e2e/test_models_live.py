"""Adding, proxying and removing models on a running server, through the CLI, without a restart."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server


def _wait_gone(client: openai.OpenAI, model: str) -> None:
    for _ in range(50):
        try:
            client.models.retrieve(model)
        except openai.NotFoundError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{model} still served")


def test_upstream_model_added_live_and_proxied(server: Server) -> None:
    """The server proxies to an OpenAI-compatible upstream: here, itself (the tiny local model)."""
    added = server.cli(
        "models",
        "add",
        "proxied",
        "--upstream",
        server.base_url,
        "--upstream-model",
        "tiny",
        "--api-key-env",
        "E2E_UPSTREAM_KEY",
        "--description",
        "代理到本机",
        "--json",
    )
    assert json.loads(added.stdout)["upstream_model"] == "tiny"
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        messages = [{"role": "user", "content": "上游代理测试"}]
        direct = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0)
        raw = client.chat.completions.with_raw_response.create(
            model="proxied", messages=messages, max_tokens=10, temperature=0
        )
        assert raw.headers["x-stratum-model-version"] == "proxied@1"
        proxied = raw.parse()
        assert proxied.choices[0].message.content == direct.choices[0].message.content
        assert proxied.usage is not None and direct.usage is not None
        assert proxied.usage.prompt_tokens == direct.usage.prompt_tokens
        assert proxied.usage.completion_tokens == direct.usage.completion_tokens
        streamed = "".join(
            (c.choices[0].delta.content or "") if c.choices else ""
            for c in client.chat.completions.create(
                model="proxied", messages=messages, max_tokens=10, temperature=0, stream=True
            )
        )
        assert streamed == direct.choices[0].message.content
        server.cli("models", "remove", "proxied", "--yes")
        _wait_gone(client, "proxied")


def test_upstream_down_is_clean_502(server: Server) -> None:
    server.cli("models", "add", "dead", "--upstream", "http://127.0.0.1:9/v1")
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "dead", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    server.cli("models", "remove", "dead", "--yes")


def test_cli_errors_are_one_line(server: Server) -> None:
    result = server.cli("models", "add", "bad", "--path", "/nonexistent/model", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("alias_ref", ["tiny@1", "tiny:latest"])
def test_refs_resolve(server: Server, alias_ref: str) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        result = client.chat.completions.create(
            model=alias_ref, messages=[{"role": "user", "content": "版本"}], max_tokens=3
        )
    assert result.model == alias_ref
