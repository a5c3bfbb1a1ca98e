"""A worker running real child processes: success with progress and logs, a crashing job that
leaves the worker alive, automatic retry, cancel of a running job, shutdown hand-back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stratum.jobs import JobService, JobSubmit, Resources
from stratum.jobs.kinds import BUILTIN_KINDS, JobKind
from stratum.jobs.worker import Worker
from stratum.settings import Settings
from stratum.storage import Database

KINDS = dict(BUILTIN_KINDS) | {
    "crash": JobKind("tests.jobs.handlers:crash"),
    "flaky": JobKind("tests.jobs.handlers:flaky"),
    "forever": JobKind("tests.jobs.handlers:forever"),
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", job_lease_seconds=30)


@pytest.fixture
def jobs(db: Database, settings: Settings) -> JobService:
    return JobService(db, jobs_dir=settings.jobs_dir, kinds=KINDS)


def _worker(db: Database, settings: Settings, threads: int = 2) -> Worker:
    capacity = Resources(cpu_threads=threads, memory_mb=4096, gpus=0)
    return Worker(db, settings, kinds=KINDS, capacity=capacity, worker_id="w1", poll_s=0.05)


def _until(worker: Worker, done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        worker.tick()
        time.sleep(0.05)


pytestmark = pytest.mark.slow


def test_a_job_runs_in_a_child_and_reports(db: Database, settings: Settings, jobs: JobService) -> None:
    job = jobs.submit(JobSubmit(kind="sleep", config={"seconds": 0.3, "steps": 3, "message": "训练中"}))
    worker = _worker(db, settings)
    _until(worker, lambda: jobs.get(job.id).status == "succeeded")
    done = jobs.get(job.id)
    assert done.progress["step"] == 3 and done.progress["total"] == 3
    assert done.result == {"steps": 3} and done.metrics == {"slept_s": 0.3}
    text = jobs.logs(job.id).text
    assert "step 3/3 训练中" in text and "attempt 1 claimed by worker w1" in text
    assert jobs.logs(job.id, tail=1).text.startswith(text.splitlines()[-1][:19])


def test_a_crashing_job_never_takes_the_worker_down(
    db: Database, settings: Settings, jobs: JobService
) -> None:
    crash = jobs.submit(JobSubmit(kind="crash", max_attempts=2))
    flaky = jobs.submit(JobSubmit(kind="flaky", max_attempts=2))
    worker = _worker(db, settings)
    _until(worker, lambda: {jobs.get(crash.id).status, jobs.get(flaky.id).status} == {"failed", "succeeded"})
    crashed = jobs.get(crash.id)
    assert crashed.status == "failed" and crashed.attempts == 2
    assert crashed.error == "killed by signal 9"
    recovered = jobs.get(flaky.id)
    assert recovered.status == "succeeded" and recovered.attempts == 2 and recovered.metrics == {"attempt": 2}
    assert "第一次失败" in jobs.logs(flaky.id).text
    # The worker is still healthy: it runs the next job.
    after = jobs.submit(JobSubmit(kind="sleep", config={"seconds": 0}))
    _until(worker, lambda: jobs.get(after.id).status == "succeeded")


def test_cancel_stops_a_running_child(db: Database, settings: Settings, jobs: JobService) -> None:
    job = jobs.submit(JobSubmit(kind="forever"))
    worker = _worker(db, settings)
    _until(worker, lambda: jobs.get(job.id).progress.get("step", 0) >= 3)
    pid = worker.running[job.id].execution.process.pid  # type: ignore[attr-defined]
    jobs.cancel(job.id)
    _until(worker, lambda: jobs.get(job.id).status == "cancelled")
    assert not worker.running
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_capacity_limits_parallel_jobs_and_shutdown_requeues(
    db: Database, settings: Settings, jobs: JobService
) -> None:
    ids = [jobs.submit(JobSubmit(kind="forever")).id for _ in range(3)]
    worker = _worker(db, settings, threads=2)
    worker.tick()
    assert len(worker.running) == 2  # two threads offered, one thread each
    assert sorted(j.status for j in jobs.list_jobs()) == ["queued", "running", "running"]
    worker.shutdown(grace_s=10)
    assert {jobs.get(i).status for i in ids} == {"queued"}
    assert {jobs.get(i).attempts for i in ids} == {0}
