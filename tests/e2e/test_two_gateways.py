"""Two gateway processes on one PostgreSQL and one Redis spend the same budget, exactly.

Each process alone would let a project spend its whole budget; sharing the counters in Redis, the
two together never bill more than the budget, and every request refused is a 429 naming the limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from stratum.storage import utcnow
from tests.conftest import PG_URL_ENV, redis_test_url
from tests.e2e.conftest import Server, start_server, stop_server

BUDGET = 1500
MAX_TOKENS = 16
STREAMS_PER_GATEWAY = 60  # 120 requests of up to ~26 tokens: demand is about twice the budget


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database on the test cluster, dropped afterwards."""
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set; run: export {PG_URL_ENV}=$(bash scripts/pg-test.sh start)")
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_two_gateways_share_one_budget(tmp_path: Path, tiny_model_dir: Path, fresh_pg_url: str) -> None:
    redis_url = redis_test_url()
    shared = {"STRATUM_DATABASE_URL": fresh_pg_url, "STRATUM_REDIS_URL": redis_url}
    # The first server migrates the database; the second starts on the migrated one.
    first = start_server(tmp_path / "gateway-a", extra_env=shared)
    servers: list[Server] = [first]
    try:
        servers.append(start_server(tmp_path / "gateway-b", extra_env=shared))
        first.cli("models", "add", "tiny", "--path", str(tiny_model_dir))
        first.cli("orgs", "create", "two-gw")
        project = json.loads(
            first.cli("projects", "create", "two-gw/app", "--token-budget", str(BUDGET), "--json").stdout
        )
        key = json.loads(first.cli("keys", "create", "two-gw/app", "--json").stdout)["key"]
        # One request each first, so both have loaded the model before the burst (billed too).
        warm = [_chat_once(server, key) for server in servers]
        warm_up = sum(warm)
        results = asyncio.run(_burst(servers, key))
        billed = int(
            json.loads(servers[1].cli("usage", "two-gw/app", "--json").stdout)["total"]["total_tokens"]
        )
        counter_key = f"stratum:quota:project:{project['id']}:tokens:{utcnow():%Y%m}"
        client = redis.Redis.from_url(redis_url)
        counter = int(client.get(counter_key) or 0)
        client.close()
    finally:
        for server in servers:
            stop_server(server)

    served = {port: [t for p, t in results if p == port and t] for port in (s.port for s in servers)}
    refused = sum(1 for _, tokens in results if tokens == 0)
    reported = warm_up + sum(tokens for _, tokens in results)
    print(
        f"\ntwo gateways: {[len(v) for v in served.values()]} served, {refused} refused, "
        f"billed {billed} of budget {BUDGET} (reported to clients {reported}, Redis counter {counter})"
    )
    # Both gateways spent from the one budget (the burst's split between them depends on timing).
    assert all(warm) and any(served.values())
    assert refused  # and the budget ran out: demand was about twice the budget
    assert billed == reported == counter <= BUDGET  # nothing left reserved, nothing over


def _chat_once(server: Server, key: str) -> int:
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "你好"}], max_tokens=MAX_TOKENS
        )
    assert reply.usage is not None
    return reply.usage.total_tokens


async def _burst(servers: list[Server], key: str) -> list[tuple[int, int]]:
    """(port, tokens billed) for every request; 0 tokens when refused with a 429 naming the budget."""
    messages = [{"role": "user", "content": "你好，Stratum"}]

    async def stream_once(client: openai.AsyncOpenAI, port: int) -> tuple[int, int]:
        try:
            stream = await client.chat.completions.create(
                model="tiny",
                messages=messages,  # type: ignore[arg-type]
                max_tokens=MAX_TOKENS,
                stream=True,
                stream_options={"include_usage": True},
            )
        except openai.RateLimitError as error:
            assert error.status_code == 429
            assert error.body["code"] == "token_budget_exceeded"  # type: ignore[index]
            assert error.body["limit"] == "project.token_budget"  # type: ignore[index]
            return port, 0
        total = 0
        async for chunk in stream:
            if chunk.usage is not None:
                total = chunk.usage.total_tokens
        assert total > 0
        return port, total

    clients = [
        openai.AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=120)
        for server in servers
    ]
    try:
        return await asyncio.gather(
            *(
                stream_once(client, server.port)
                for _ in range(STREAMS_PER_GATEWAY)
                for client, server in zip(clients, servers, strict=True)
            )
        )
    finally:
        for client in clients:
            await client.close()
