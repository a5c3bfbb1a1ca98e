"""Exclusive keys on both store backends: one queued or running job per key, enforced by the store's
partial unique index (a 409 naming the holder, nothing written), the key free again once its holder
finishes, requeues that keep it without conflict, retries refused while another job holds it, and
concurrent submissions of which exactly one wins."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from stratum.errors import Conflict
from stratum.jobs import JobService, JobSubmit, Resources, Scheduler
from stratum.jobs.kinds import BUILTIN_KINDS, JobKind
from stratum.jobs.service import ExclusiveKeyHeld
from stratum.storage import Database, utcnow
from tests.conftest import race

BIG = Resources(cpu_threads=64, memory_mb=1 << 20, gpus=0)
# A kind that derives its key from its config, as kb_ingest does from its KB.
KINDS = dict(BUILTIN_KINDS) | {
    "tidy": JobKind(
        "stratum.jobs.builtin:sleep",
        "stratum.jobs.builtin:validate_sleep",
        "tests.jobs.test_exclusive_keys:tidy_key",
    )
}


def tidy_key(config: dict[str, Any]) -> str:
    return f"tidy:{config['message']}"


@pytest.fixture
def jobs(db: Database, tmp_path: Path) -> JobService:
    return JobService(db, jobs_dir=tmp_path / "jobs", kinds=KINDS)


def _submit(jobs: JobService, key: str | None, **fields: Any) -> str:
    spec = JobSubmit(kind="sleep", config={"seconds": 0}, exclusive_key=key, **fields)
    return jobs.submit(spec).id


def _all(jobs: JobService) -> list[str]:
    return [job.id for job in jobs.list_jobs()]


def test_a_second_job_with_a_held_key_is_a_conflict_naming_the_holder(jobs: JobService) -> None:
    first = _submit(jobs, "索引:甲")
    assert jobs.get(first).exclusive_key == "索引:甲"
    with pytest.raises(ExclusiveKeyHeld) as raised:
        _submit(jobs, "索引:甲", name="second")
    error = raised.value
    assert isinstance(error, Conflict) and error.status_code == 409
    assert error.holder.id == first and error.key == "索引:甲"
    assert error.to_dict() == {
        "error": {
            "message": f"job {first} (queued) holds exclusive key '索引:甲'; wait for it or cancel it",
            "type": "conflict_error",
            "param": "exclusive_key",
            "code": "exclusive_key_held",
        }
    }
    assert error.__cause__ is None and error.__suppress_context__  # no database error in the reply
    assert _all(jobs) == [first]  # nothing half-written


def test_other_keys_and_no_key_are_unaffected(jobs: JobService) -> None:
    ids = [_submit(jobs, "a"), _submit(jobs, "b"), _submit(jobs, None), _submit(jobs, None)]
    assert sorted(_all(jobs)) == sorted(ids)
    assert [jobs.get(i).exclusive_key for i in ids] == ["a", "b", None, None]


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled queued", "cancelled running"])
def test_the_key_is_free_again_once_its_holder_finishes(db: Database, jobs: JobService, outcome: str) -> None:
    holder = _submit(jobs, "k", max_attempts=1)
    scheduler = Scheduler(db)
    if outcome == "cancelled queued":
        jobs.cancel(holder)
    else:
        claim = scheduler.claim("w", BIG)
        assert claim is not None and claim.id == holder
        if outcome == "cancelled running":
            jobs.cancel(holder)
            with pytest.raises(ExclusiveKeyHeld):  # held until its worker has stopped it
                _submit(jobs, "k")
        ok = outcome == "succeeded"
        scheduler.finish("w", holder, claim.attempt, ok=ok, error=None if ok else "boom")
    assert jobs.get(holder).status == outcome.split()[0]
    after = _submit(jobs, "k")
    assert jobs.get(after).status == "queued"
    with pytest.raises(ExclusiveKeyHeld, match=after):
        _submit(jobs, "k")


def test_requeues_keep_the_key_without_conflict(db: Database, jobs: JobService) -> None:
    """queued ↔ running stays inside the index's states: a failed attempt, a worker giving the job
    back and an expired lease all requeue the holder, which keeps its key throughout."""
    holder = _submit(jobs, "k", max_attempts=3)
    scheduler = Scheduler(db, lease_s=5)

    claim = scheduler.claim("w1", BIG)
    assert claim is not None
    assert scheduler.finish("w1", holder, claim.attempt, ok=False, error="flaky") == "queued"
    claim = scheduler.claim("w1", BIG)
    assert claim is not None and scheduler.release("w1", holder, claim.attempt)
    claim = scheduler.claim("w2", BIG)
    assert claim is not None
    later = utcnow() + timedelta(seconds=60)
    assert [(r.id, r.status) for r in scheduler.requeue_expired(now=later)] == [(holder, "queued")]
    with pytest.raises(ExclusiveKeyHeld, match=holder):
        _submit(jobs, "k")
    claim = scheduler.claim("w3", BIG)
    assert claim is not None and claim.id == holder
    assert scheduler.finish("w3", holder, claim.attempt, ok=True) == "succeeded"
    assert jobs.get(holder).exclusive_key == "k" and jobs.get(holder).status == "succeeded"
    assert _submit(jobs, "k")


def test_a_retry_while_another_job_holds_the_key_is_refused_and_changes_nothing(
    db: Database, jobs: JobService
) -> None:
    first = _submit(jobs, "k", max_attempts=1)
    scheduler = Scheduler(db)
    claim = scheduler.claim("w", BIG)
    assert claim is not None
    assert scheduler.finish("w", first, claim.attempt, ok=False, error="boom") == "failed"
    before = jobs.get(first)
    second = _submit(jobs, "k")  # the failed job no longer holds the key

    with pytest.raises(ExclusiveKeyHeld, match=second) as raised:
        jobs.retry(first)
    assert raised.value.holder.id == second
    assert jobs.get(first) == before  # still failed, same attempts and finish time
    # The scheduler carries on: the holder runs, then the retry goes through.
    claim = scheduler.claim("w", BIG)
    assert claim is not None and claim.id == second
    scheduler.finish("w", second, claim.attempt, ok=True)
    retried = jobs.retry(first)
    assert retried.status == "queued" and retried.exclusive_key == "k"
    claim = scheduler.claim("w", BIG)
    assert claim is not None and claim.id == first


def test_a_holder_that_finishes_before_it_is_named_lets_the_submission_through(
    jobs: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _submit(jobs, "k")
    look_up = jobs._holder

    def finished_meanwhile(key: str) -> Any:
        jobs.cancel(first)  # between the refused insert and the look-up
        return look_up(key)

    monkeypatch.setattr(jobs, "_holder", finished_meanwhile)
    second = _submit(jobs, "k")
    assert jobs.get(second).status == "queued" and jobs.get(first).status == "cancelled"


def test_a_kind_that_derives_its_key_overrides_the_callers(jobs: JobService) -> None:
    first = jobs.submit(JobSubmit(kind="tidy", config={"message": "库"}, exclusive_key="mine"))
    assert first.exclusive_key == "tidy:库"
    with pytest.raises(ExclusiveKeyHeld, match=first.id):
        jobs.submit(JobSubmit(kind="tidy", config={"message": "库"}))
    assert jobs.submit(JobSubmit(kind="tidy", config={"message": "别的"})).exclusive_key == "tidy:别的"
    assert _submit(jobs, "mine")  # the caller's key was never taken


def test_concurrent_submissions_with_one_key_queue_exactly_one(jobs: JobService) -> None:
    threads = 8
    barrier = threading.Barrier(threads)

    def submit() -> str:
        barrier.wait()
        return _submit(jobs, "one")

    queued, refused = race(threads, submit, ExclusiveKeyHeld)
    assert len(queued) == 1 and len(refused) == threads - 1
    assert {error.holder.id for error in refused} == set(queued)
    assert _all(jobs) == queued
