"""Governance end to end: tenants made with the CLI, enforced by the running server, seen by the SDK."""

from __future__ import annotations

import asyncio
import json
import time

import openai
import pytest

from tests.e2e.conftest import Server

BUDGET = 1500
MAX_TOKENS = 16


def _cli_json(server: Server, *args: str) -> dict[str, object]:
    return json.loads(server.cli(*args, "--json").stdout)


def _usage_total(server: Server, path: str) -> int:
    return int(_cli_json(server, "usage", path)["total"]["total_tokens"])  # type: ignore[index]


@pytest.mark.slow
def test_scoped_key_budget_and_usage_through_the_sdk(server: Server) -> None:
    _cli_json(server, "orgs", "create", "e2e-org")
    _cli_json(server, "projects", "create", "e2e-org/app", "--token-budget", str(BUDGET))
    key = str(_cli_json(server, "keys", "create", "e2e-org/app", "--models", "tiny*")["key"])
    messages = [{"role": "user", "content": "你好，Stratum"}]
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
        # The key's model scope: only tiny* is listed and usable; others are 403 naming the rule.
        assert [m.id for m in client.models.list()] == ["tiny"]
        with pytest.raises(openai.PermissionDeniedError) as denied:
            client.embeddings.create(model="multilingual-e5-small", input=["你好"])
        assert denied.value.body["rule"] == "key.models"  # type: ignore[index]
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=MAX_TOKENS)

    async def stream_once(client: openai.AsyncOpenAI) -> int:
        """Tokens billed to one streamed request, or 0 when refused with 429 naming the budget."""
        try:
            stream = await client.chat.completions.create(
                model="tiny",
                messages=messages,
                max_tokens=MAX_TOKENS,
                stream=True,
                stream_options={"include_usage": True},
            )
        except openai.RateLimitError as error:
            assert error.body["code"] == "token_budget_exceeded"  # type: ignore[index]
            assert error.body["limit"] == "project.token_budget"  # type: ignore[index]
            return 0
        total = 0
        async for chunk in stream:
            if chunk.usage is not None:
                total = chunk.usage.total_tokens
        return total

    async def burst() -> list[int]:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
            return await asyncio.gather(*(stream_once(client) for _ in range(60)))

    results = asyncio.run(burst())
    assert 0 in results and any(results)  # some served, some refused
    # Usage records are written as each response ends; give the last ones a moment.
    deadline = time.monotonic() + 5
    billed = _usage_total(server, "e2e-org/app")
    while billed < sum(results) and time.monotonic() < deadline:
        time.sleep(0.2)
        billed = _usage_total(server, "e2e-org/app")
    assert sum(results) < billed <= BUDGET  # the first, unstreamed request is billed too

    # Raising the budget from the CLI applies to the running server within 2 seconds.
    _cli_json(server, "projects", "limits", "e2e-org/app", "--token-budget", str(BUDGET * 10))
    time.sleep(0.1)
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=MAX_TOKENS)
    by_key = _cli_json(server, "usage", "e2e-org/app", "--by", "key")
    assert len(by_key["lines"]) == 1  # type: ignore[arg-type]
