"""The batched audit writer inside the gateway: concurrent requests and admin changes keep one exact
hash chain, and records still queued at shutdown are written by the lifespan (nothing lost)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import httpx
from sqlalchemy import func, select

from stratum.engine.fake import FakeEngine
from stratum.gateway.app import create_app
from stratum.governance.audit import AuditService
from stratum.governance.audit_writer import AuditWriter
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tables import AuditRow, UsageRow
from stratum.registry.schemas import ModelVersionPublic
from stratum.settings import Settings
from stratum.storage import Database

REQUESTS = 60
ID = "11010519491231002X"


def _app(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path / "home", demo_model=False, embeddings_model=False)

    def factory(version: ModelVersionPublic) -> FakeEngine:
        return FakeEngine(delay_s=0.001)

    return create_app(settings, engine_factory=factory), settings


async def test_concurrent_requests_and_admin_changes_keep_one_exact_chain(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    async with app.router.lifespan_context(app):
        state = app.state.stratum
        state.registry.add_model(name="fake", source="upstream", upstream_url="http://127.0.0.1:9/v1")
        state.tenancy.create_org(OrgCreate(name="acme"))
        state.tenancy.create_project("acme", ProjectCreate(name="bot"))
        key, _ = state.keys.create_key(name="load", role="developer", project="acme/bot")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:

            async def one(i: int) -> int:
                body = {
                    "model": "fake",
                    "stream": i % 2 == 0,
                    "messages": [{"role": "user", "content": f"第{i}号，身份证{ID}"}],
                }
                response = await client.post(
                    "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                )
                assert ID not in response.text
                return response.status_code

            async def admin_changes() -> None:
                for i in range(10):
                    await anyio.to_thread.run_sync(
                        lambda i=i: state.tenancy.create_project("acme", ProjectCreate(name=f"p{i}"))
                    )

            results = await asyncio.gather(*(one(i) for i in range(REQUESTS)), admin_changes())
        assert results[:REQUESTS] == [200] * REQUESTS
        await anyio.to_thread.run_sync(state.audit_writer.flush)
        verified = state.audit.verify()
        # org + 11 projects + key + 60 inference entries, one linear chain.
        assert verified.ok and verified.count == 1 + 11 + 1 + REQUESTS
        inference = [e for e in state.audit.list_entries(limit=200) if e.action == "inference"]
        assert len(inference) == REQUESTS
        assert all(e.detail["guard"]["prompt_pii"] == {"id_card": 1} for e in inference)


async def test_records_queued_at_shutdown_are_written(tmp_path: Path) -> None:
    app, settings = _app(tmp_path)
    async with app.router.lifespan_context(app):
        state = app.state.stratum
        state.registry.add_model(name="fake", source="upstream", upstream_url="http://127.0.0.1:9/v1")
        # A batching window far longer than the test: only the shutdown flush can write these.
        state.audit_writer.close()
        state.audit_writer = AuditWriter(state.db, interval_s=60.0, max_batch=10_000)
        key, _ = state.keys.create_key(name="admin", role="admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            for i in range(5):
                response = await client.post(
                    "/v1/chat/completions",
                    json={"model": "fake", "messages": [{"role": "user", "content": f"你好{i}"}]},
                    headers={"authorization": f"Bearer {key}"},
                )
                assert response.status_code == 200
        await asyncio.sleep(0.2)
        with state.db.session(write=False) as session:
            assert session.scalar(select(func.count()).select_from(UsageRow)) == 0  # still queued
    # The lifespan has ended: the writer was closed and flushed.
    with Database(settings.resolved_database_url) as db:
        with db.session(write=False) as session:
            assert session.scalar(select(func.count()).select_from(UsageRow)) == 5
            assert (
                session.scalar(
                    select(func.count()).select_from(AuditRow).where(AuditRow.action == "inference")
                )
                == 5
            )
        assert AuditService(db).verify().ok


async def test_retention_prunes_old_entries_in_the_background(tmp_path: Path) -> None:
    from datetime import timedelta

    from stratum.gateway.retention import prune_periodically
    from stratum.governance.audit import append, entry_hash

    settings = Settings(home=tmp_path / "home", audit_retention_days=30)
    settings.home.mkdir(parents=True)
    with Database(settings.resolved_database_url) as db:
        db.migrate()
        with db.session() as session:
            old = append(session, actor="t", action="test", target="旧")
            old.at -= timedelta(days=31)
            old.hash = entry_hash(old)
            session.flush()
            append(session, actor="t", action="test", target="新")
        audit = AuditService(db)
        task = asyncio.create_task(prune_periodically(audit, settings))
        for _ in range(100):
            if audit.verify().checkpoint_id == 1:
                break
            await asyncio.sleep(0.05)
        task.cancel()
        verified = audit.verify()
        assert verified.ok and verified.checkpoint_id == 1
        assert [e.target for e in audit.list_entries()] == ["audit_log", "新"]
