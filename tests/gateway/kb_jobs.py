"""A job worker for gateway tests of KB ingest: threads instead of processes (the ThreadExecutor
fake), and the gateway tests' ``FakeEncoder`` instead of loading the KB's embedding model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from stratum.jobs.context import JobContext
from stratum.jobs.executor import ThreadExecutor
from stratum.jobs.kinds import BUILTIN_KINDS, JobKind
from stratum.jobs.schemas import Resources
from stratum.jobs.worker import Worker
from stratum.knowledge.ingest_job import execute
from stratum.settings import Settings
from stratum.storage import Database

KINDS = dict(BUILTIN_KINDS) | {
    "kb_ingest": JobKind("tests.gateway.kb_jobs:run", "stratum.knowledge.ingest_job:validate")
}


def run(context: JobContext) -> dict[str, Any]:
    """The real ``kb_ingest`` body with the fake encoder the gateway's pool serves."""
    from tests.gateway.conftest import FakeEncoder

    settings = Settings()
    with Database(settings.resolved_database_url) as db:
        return execute(context, db, settings, encoder=FakeEncoder())


@contextmanager
def running_worker(db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    # The job body reads Settings() like a child process does: point it at the gateway's store.
    monkeypatch.setenv("STRATUM_HOME", str(settings.home))
    monkeypatch.setenv("STRATUM_DATABASE_URL", settings.resolved_database_url)
    for name, value in settings.model_dump().items():
        if name.startswith("kb_") and value is not None:
            monkeypatch.setenv(
                f"STRATUM_{name.upper()}", str(value).lower() if isinstance(value, bool) else str(value)
            )
    worker = Worker(
        db,
        settings,
        executor=ThreadExecutor(),
        kinds=KINDS,
        capacity=Resources(cpu_threads=2, memory_mb=4096),
        worker_id="kb-test",
        poll_s=0.05,
    )
    thread = threading.Thread(target=worker.run, name="kb-test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
