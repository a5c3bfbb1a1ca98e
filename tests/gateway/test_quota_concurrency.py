"""Exact budgets under concurrency: 200 streaming requests at once against one project budget.

Each request reserves its worst case (prompt + max_tokens) before the model runs and settles to its
actual usage afterwards, so the billed total can never pass the budget, and every request that does
not fit gets a 429 naming the limit. Runs on SQLite and PostgreSQL counters (the store default) and
on Redis counters (``STRATUM_REDIS_URL``).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from stratum.engine.fake import FakeEngine
from stratum.gateway.app import create_app
from stratum.governance.redis_counters import RedisCounterStore
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.registry.schemas import ModelVersionPublic
from stratum.settings import Settings
from stratum.storage import utcnow
from tests.conftest import PG_URL_ENV, redis_test_url

CONCURRENCY = 200
BUDGET = 3000
MAX_TOKENS = 20
PROMPT = "数一数 count"  # the fake engine counts one token per character: 10 tokens


def _database_url(backend: str, tmp_path: Path) -> tuple[str | None, str | None]:
    if backend in ("sqlite", "redis"):
        return None, None
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), schema


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
async def test_200_concurrent_streams_never_exceed_the_budget(tmp_path: Path, backend: str) -> None:
    redis_url = redis_test_url() if backend == "redis" else None
    url, schema = _database_url(backend, tmp_path)
    settings = Settings(
        home=tmp_path / "home",
        demo_model=False,
        embeddings_model=False,
        database_url=url,
        redis_url=redis_url,
    )
    engines: list[FakeEngine] = []

    def factory(version: ModelVersionPublic) -> FakeEngine:
        # Replies of varying length, some longer than max_tokens: actual usage differs per request.
        engine = FakeEngine([("好" * (i % 37)) or "x" for i in range(CONCURRENCY)], delay_s=0.002)
        engines.append(engine)
        return engine

    app = create_app(settings, engine_factory=factory)
    try:
        async with app.router.lifespan_context(app):
            state = app.state.stratum
            state.registry.add_model(name="fake", source="upstream", upstream_url="http://127.0.0.1:9/v1")
            state.tenancy.create_org(OrgCreate(name="acme"))
            state.tenancy.create_project("acme", ProjectCreate(name="bot", token_budget=BUDGET))
            key, _ = state.keys.create_key(name="load", role="developer", project="acme/bot")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway", timeout=120
            ) as client:

                async def one() -> tuple[int, dict[str, object]]:
                    body = {
                        "model": "fake",
                        "stream": True,
                        "stream_options": {"include_usage": True},
                        "max_tokens": MAX_TOKENS,
                        "messages": [{"role": "user", "content": PROMPT}],
                    }
                    response = await client.post(
                        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                    )
                    if response.status_code != 200:
                        return response.status_code, response.json()
                    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
                    assert events[-1] == "[DONE]"
                    return 200, json.loads(events[-2])["usage"]

                results = await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
            project = state.tenancy.get_project("acme/bot")
            for _ in range(200):  # settlement happens right after each response
                billed = state.usage.billed_tokens(project_id=project.id)
                if billed == sum(r[1]["total_tokens"] for r in results if r[0] == 200):  # type: ignore[misc]
                    break
                await asyncio.sleep(0.05)
            served = [r for r in results if r[0] == 200]
            refused = [r for r in results if r[0] != 200]
            reported = sum(int(usage["total_tokens"]) for _, usage in served)  # type: ignore[call-overload]
            print(
                f"\n{backend}: {len(served)} served, {len(refused)} refused, "
                f"billed {billed} of budget {BUDGET} (reported to clients: {reported})"
            )
            assert billed == reported <= BUDGET
            assert served and refused
            for status, body in refused:
                assert status == 429
                error = body["error"]  # type: ignore[index]
                assert error["code"] == "token_budget_exceeded" and error["limit"] == "project.token_budget"  # type: ignore[index]
            # Nothing stays reserved: the counter equals what was billed.
            counter = state.quotas.counters
            if backend == "redis":
                assert isinstance(counter, RedisCounterStore)
            assert counter.value(f"project:{project.id}:tokens:{utcnow():%Y%m}") == billed
            assert sum(e.running for e in engines) == 0
            # Requests were refused while others held reservations; once those settled, the unused
            # part is back: a request that fits in what is left is served.
            if BUDGET - billed >= 10 + MAX_TOKENS:
                status, _ = await _after(app, key)
                assert status == 200
    finally:
        if schema is not None:
            admin = create_engine(make_url(os.environ[PG_URL_ENV]).set(drivername="postgresql+psycopg"))
            with admin.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


async def _after(app, key: str) -> tuple[int, object]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        body = {"model": "fake", "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": PROMPT}]}
        response = await client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
        return response.status_code, response.json()
