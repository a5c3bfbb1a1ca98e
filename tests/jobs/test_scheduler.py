"""The queue's scheduling rules on both store backends: priorities, capacity and pools, the running
limit, cancel, retry, lease expiry, and atomic claims by concurrent workers."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from stratum.errors import Conflict, InvalidRequest
from stratum.jobs import JobService, JobSubmit, Resources, Scheduler
from stratum.storage import Database, utcnow

BIG = Resources(cpu_threads=64, memory_mb=1 << 20, gpus=0)


@pytest.fixture
def jobs(db: Database, tmp_path: Path) -> JobService:
    return JobService(db, jobs_dir=tmp_path / "jobs")


def _submit(jobs: JobService, **fields: object) -> str:
    config = fields.pop("config", {"seconds": 0})
    return jobs.submit(JobSubmit(kind="sleep", config=config, **fields)).id  # type: ignore[arg-type]


def test_highest_priority_first_then_oldest(db: Database, jobs: JobService) -> None:
    low = _submit(jobs, priority=-5, name="低")
    first = _submit(jobs, priority=0)
    high = _submit(jobs, priority=10)
    second = _submit(jobs, priority=0)
    scheduler = Scheduler(db)
    order = [scheduler.claim("w", BIG) for _ in range(5)]
    assert [c.id if c else None for c in order] == [high, first, second, low, None]
    shown = jobs.get(low)
    assert shown.status == "running" and shown.attempts == 1 and shown.worker_id == "w"
    assert shown.name == "低" and shown.lease_expires_at is not None


def test_a_job_runs_only_where_its_request_fits(db: Database, jobs: JobService) -> None:
    wide = _submit(jobs, resources=Resources(cpu_threads=4), priority=5)
    gpu = _submit(jobs, resources=Resources(gpus=1), priority=9)
    narrow = _submit(jobs)
    scheduler = Scheduler(db)
    cpu_worker = Resources(cpu_threads=2, memory_mb=4096, gpus=0)
    claim = scheduler.claim("cpu", cpu_worker)
    assert claim is not None and claim.id == narrow  # the others do not fit this worker
    assert scheduler.claim("cpu", cpu_worker) is None
    claim = scheduler.claim("gpu", Resources(cpu_threads=8, memory_mb=4096, gpus=1))
    assert claim is not None and claim.id == gpu
    assert jobs.get(gpu).pool == "gpu" and jobs.get(wide).pool == "cpu"
    assert scheduler.claim("mem", Resources(cpu_threads=8, memory_mb=10, gpus=0)) is None
    claim = scheduler.claim("big", BIG)
    assert claim is not None and claim.id == wide


def test_running_limit_holds_across_workers(db: Database, jobs: JobService) -> None:
    ids = [_submit(jobs) for _ in range(3)]
    scheduler = Scheduler(db, max_running=2)
    first, second = scheduler.claim("a", BIG), scheduler.claim("b", BIG)
    assert first and second and scheduler.claim("c", BIG) is None
    assert scheduler.finish("a", first.id, first.attempt, ok=True, result={"x": 1}) == "succeeded"
    third = scheduler.claim("c", BIG)
    assert third is not None and third.id == ids[2]


def test_cancel_queued_and_running(db: Database, jobs: JobService) -> None:
    queued, running = _submit(jobs), _submit(jobs, priority=1)
    scheduler = Scheduler(db)
    claim = scheduler.claim("w", BIG)
    assert claim is not None and claim.id == running
    assert jobs.cancel(queued).status == "cancelled"
    assert jobs.cancel(running).cancel_requested
    assert scheduler.heartbeat("w", running, claim.attempt) == "cancel"
    assert scheduler.finish("w", running, claim.attempt, ok=False, error="terminated") == "cancelled"
    with pytest.raises(Conflict):
        jobs.cancel(running)
    assert scheduler.claim("w", BIG) is None


def test_failed_attempts_are_retried_up_to_max_then_by_hand(db: Database, jobs: JobService) -> None:
    job = _submit(jobs, max_attempts=2)
    scheduler = Scheduler(db)
    for attempt, expected in ((1, "queued"), (2, "failed")):
        claim = scheduler.claim("w", BIG)
        assert claim is not None and claim.attempt == attempt
        assert scheduler.finish("w", job, attempt, ok=False, error="boom 爆") == expected
    shown = jobs.get(job)
    assert shown.error == "boom 爆" and shown.finished_at is not None
    with pytest.raises(Conflict):
        jobs.retry(_submit(jobs))  # a queued job cannot be retried
    again = jobs.retry(job)
    assert again.status == "queued" and again.max_attempts == 3
    claim = scheduler.claim("w", BIG)
    assert claim is not None and claim.id == job and claim.attempt == 3
    assert scheduler.finish("w", job, 3, ok=True, metrics={"loss": 0.5}) == "succeeded"
    assert jobs.get(job).metrics == {"loss": 0.5} and jobs.get(job).error is None


def test_expired_lease_requeues_and_fences_the_lost_worker(db: Database, jobs: JobService) -> None:
    job = _submit(jobs, max_attempts=2)
    scheduler = Scheduler(db, lease_s=30)
    claim = scheduler.claim("crashed", BIG)
    assert claim is not None
    assert scheduler.requeue_expired() == []  # lease still valid
    later = utcnow() + timedelta(seconds=31)
    changed = scheduler.requeue_expired(now=later)
    assert [(c.id, c.status) for c in changed] == [(job, "queued")]
    assert "crashed" in (jobs.get(job).error or "")
    second = scheduler.claim("healthy", BIG)
    assert second is not None and second.attempt == 2
    # The old worker wakes up: everything it says about attempt 1 is ignored.
    assert scheduler.heartbeat("crashed", job, 1) == "lost"
    assert scheduler.finish("crashed", job, 1, ok=True) is None
    assert scheduler.heartbeat("healthy", job, 2, progress={"step": 3}) == "ok"
    assert jobs.get(job).progress == {"step": 3}
    # The last attempt's worker dies too: the job fails instead of looping forever.
    changed = scheduler.requeue_expired(now=utcnow() + timedelta(seconds=61))
    assert [(c.id, c.status) for c in changed] == [(job, "failed")]


def test_release_gives_the_attempt_back(db: Database, jobs: JobService) -> None:
    job = _submit(jobs, max_attempts=1)
    scheduler = Scheduler(db)
    claim = scheduler.claim("w", BIG)
    assert claim is not None and scheduler.release("w", job, claim.attempt)
    shown = jobs.get(job)
    assert shown.status == "queued" and shown.attempts == 0


def test_concurrent_workers_never_claim_the_same_job(empty_db: Database, tmp_path: Path) -> None:
    empty_db.migrate()
    jobs = JobService(empty_db, jobs_dir=tmp_path / "jobs")
    submitted = {_submit(jobs) for _ in range(24)}
    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def work(name: str) -> None:
        # Its own engine and connections, like a separate worker process.
        own = Database(empty_db.url.render_as_string(hide_password=False))
        scheduler = Scheduler(own)
        barrier.wait()
        try:
            while (claim := scheduler.claim(name, BIG)) is not None:
                with lock:
                    claimed.append((claim.id, name))
        finally:
            own.dispose()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [job_id for job_id, _ in claimed]
    assert sorted(ids) == sorted(submitted) and len(set(ids)) == len(ids)
    assert {job.worker_id for job in jobs.list_jobs()} <= {f"w{i}" for i in range(4)}


def test_submit_validates_kind_config_and_project(jobs: JobService) -> None:
    with pytest.raises(InvalidRequest, match="unknown job kind"):
        jobs.submit(JobSubmit(kind="nope"))
    with pytest.raises(InvalidRequest, match="seconds"):
        jobs.submit(JobSubmit(kind="sleep", config={"seconds": -1}))
    with pytest.raises(InvalidRequest, match="status must be"):
        jobs.list_jobs(status="done")
    with pytest.raises(InvalidRequest):
        jobs.submit(JobSubmit(kind="sleep"), project="no-slash")


def test_the_thread_executor_fake_runs_a_job_in_process(db: Database, tmp_path: Path) -> None:
    from stratum.jobs.executor import ThreadExecutor
    from stratum.jobs.worker import Worker
    from stratum.settings import Settings

    settings = Settings(home=tmp_path / "home")
    jobs = JobService(db, jobs_dir=settings.jobs_dir)
    job = jobs.submit(JobSubmit(kind="sleep", config={"seconds": 0.05, "steps": 2, "message": "线程"}))
    worker = Worker(db, settings, executor=ThreadExecutor(), capacity=BIG, worker_id="t", poll_s=0.01)
    deadline = time.monotonic() + 30
    while jobs.get(job.id).status != "succeeded":
        assert time.monotonic() < deadline
        worker.tick()
        time.sleep(0.02)
    assert jobs.get(job.id).result == {"steps": 2} and "step 2/2 线程" in jobs.logs(job.id).text


def test_list_by_config_value_is_filtered_in_the_store(jobs: JobService) -> None:
    # The matching job is the oldest: a filter applied after the limit would never see it.
    wanted = _submit(jobs, config={"seconds": 0, "message": "知识库-甲"})
    for _ in range(3):
        _submit(jobs, config={"seconds": 0, "message": "知识库-乙"})
    found = jobs.list_jobs(kind="sleep", config={"message": "知识库-甲"}, limit=1)
    assert [job.id for job in found] == [wanted]
    assert jobs.list_jobs(config={"message": "无"}) == []
