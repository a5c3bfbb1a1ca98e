"""The Ray executor against a local Ray instance (``ray.init(num_cpus=1)``): a job runs as a Ray
task with progress, result and log; a running job is cancelled; a crash is a failed attempt."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stratum.evals.service import EvalService
from stratum.jobs import JobService, JobSubmit, Resources
from stratum.jobs.executor import make_executor
from stratum.jobs.kinds import BUILTIN_KINDS, JobKind
from stratum.jobs.worker import Worker
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database
from tests.cli.conftest import FakeOpenAI, fake_openai  # noqa: F401  (fixture)

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow

KINDS = dict(BUILTIN_KINDS) | {
    "crash": JobKind("tests.jobs.handlers:crash"),
    "forever": JobKind("tests.jobs.handlers:forever"),
}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # One CPU, no dashboard: the smallest local cluster; shared by the module's tests (startup ~10 s).
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", job_lease_seconds=30, executor="ray")


@pytest.fixture
def jobs(db: Database, settings: Settings) -> JobService:
    return JobService(db, jobs_dir=settings.jobs_dir, kinds=KINDS)


def _worker(db: Database, settings: Settings) -> Worker:
    capacity = Resources(cpu_threads=1, memory_mb=4096, gpus=0)
    # No executor given: the worker builds the one STRATUM_EXECUTOR names (Ray is already joined).
    return Worker(db, settings, kinds=KINDS, capacity=capacity, worker_id="ray-w", poll_s=0.05)


def _until(worker: Worker, done: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        worker.tick()
        time.sleep(0.05)


def test_settings_choose_the_ray_executor(local_ray: None, settings: Settings) -> None:
    from stratum.jobs.ray_executor import RayExecutor

    assert isinstance(make_executor(settings), RayExecutor)
    assert type(make_executor(Settings(home=settings.home))).__name__ == "ProcessExecutor"


def test_a_job_runs_as_a_ray_task_with_progress_and_logs(
    local_ray: None, db: Database, settings: Settings, jobs: JobService
) -> None:
    job = jobs.submit(JobSubmit(kind="sleep", config={"seconds": 0.3, "steps": 3, "message": "雷训练"}))
    worker = _worker(db, settings)
    _until(worker, lambda: jobs.get(job.id).status == "succeeded")
    done = jobs.get(job.id)
    assert done.progress["step"] == 3 and done.result == {"steps": 3} and done.metrics == {"slept_s": 0.3}
    text = jobs.logs(job.id).text
    assert "step 3/3 雷训练" in text and "attempt 1 succeeded" in text


# ~20 s per backend (two Ray tasks, each a child process): cancelling is a flag in the store that the
# worker reads, tested on both backends with the process executor (tests/jobs/test_worker.py); the
# Ray path runs on SQLite in `make test` and on PostgreSQL in `make test-slow`. The other Ray tests
# here run on both backends.
@pytest.mark.parametrize(
    "db", ["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.extra])], indirect=True
)
def test_cancel_stops_the_ray_task_and_its_child(
    local_ray: None, db: Database, settings: Settings, jobs: JobService
) -> None:
    job = jobs.submit(JobSubmit(kind="forever"))
    worker = _worker(db, settings)
    _until(worker, lambda: jobs.get(job.id).progress.get("step", 0) >= 3)
    jobs.cancel(job.id)
    _until(worker, lambda: jobs.get(job.id).status == "cancelled")
    assert not worker.running
    # The child stopped writing progress: its file no longer changes.
    progress = next((settings.jobs_dir / job.id / "run").glob("attempt-*/progress.json"))
    before = progress.read_text()
    time.sleep(0.5)
    assert progress.read_text() == before
    # The single Ray CPU is free again: the next job runs.
    after = jobs.submit(JobSubmit(kind="sleep", config={"seconds": 0}))
    _until(worker, lambda: jobs.get(after.id).status == "succeeded")


def test_a_crashing_job_is_a_failed_attempt(
    local_ray: None, db: Database, settings: Settings, jobs: JobService
) -> None:
    job = jobs.submit(JobSubmit(kind="crash", max_attempts=1))
    worker = _worker(db, settings)
    _until(worker, lambda: jobs.get(job.id).status == "failed")
    assert jobs.get(job.id).error == "killed by signal 9"


def test_an_eval_job_runs_on_ray_and_stores_its_run(
    local_ray: None,
    fake_openai: FakeOpenAI,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A real job kind on a Ray worker: the child opens the worker's store, answers a Chinese suite
    through a served (upstream) model and stores the run with lineage."""
    settings = Settings(executor="ray")  # the autouse home: the child's store is this test's store
    db = Database(settings.resolved_database_url)
    db.migrate()
    try:
        registry = RegistryService(db)
        registry.add_model(
            name="bot",
            source="upstream",
            upstream_url=fake_openai.url,
            upstream_model="fake",
            api_key_env="FAKE_KEY",
        )
        registry.set_alias(name="bot", alias="prod", version=1)
        suite = tmp_path / "问答.jsonl"
        suite.write_text(
            "\n".join(
                json.dumps(
                    {"id": f"q{i}", "prompt": f"问{i}", "answer": "你好，我是测试模型。" if i < 3 else "不"}
                )
                for i in range(4)
            ),
            encoding="utf-8",
        )
        jobs = JobService(db, jobs_dir=settings.jobs_dir)
        job = jobs.submit(
            JobSubmit(
                kind="eval", config={"model": "bot:prod", "suite": str(suite), "metrics": ["exact_match"]}
            )
        )
        worker = Worker(db, settings, capacity=Resources(cpu_threads=1, memory_mb=4096, gpus=0), poll_s=0.05)
        # The Ray workers started before this test: the upstream key reaches the child this way.
        worker.child_env["FAKE_KEY"] = fake_openai.api_key
        _until(worker, lambda: jobs.get(job.id).status in ("succeeded", "failed"))
        done = jobs.get(job.id)
        assert done.status == "succeeded", jobs.logs(job.id).text
        assert done.result["metrics"] == {"exact_match": 0.75} and done.progress["step"] == 4
        assert EvalService(db).get_run(done.result["run"]).model_ref == "bot@1"
    finally:
        db.dispose()
