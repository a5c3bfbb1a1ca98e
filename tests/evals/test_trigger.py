"""The periodic trigger: workers claim due eval schedules (exactly one of two wins each) and queue
one ``eval`` job per schedule; the job's drop check flags the schedule."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

from stratum.evals.runner import ItemResult, RunResult
from stratum.evals.schedule import ScheduleService
from stratum.evals.service import EvalService
from stratum.evals.suites import load_suite
from stratum.evals.trigger import enqueue_due, job_config, worker_tasks
from stratum.jobs import JobService, Resources
from stratum.jobs.worker import Worker
from stratum.settings import Settings
from stratum.storage import Database, utcnow


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "客服.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": f"q{i}", "prompt": f"问{i}", "answer": "答"}, ensure_ascii=False)
            for i in range(3)
        ),
        encoding="utf-8",
    )
    return path


def test_two_workers_queue_a_due_schedule_once(db: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", eval_schedule_poll=0.01)
    schedules = ScheduleService(db, settings)
    made = schedules.add(model="bot:prod", suite_path=str(_suite(tmp_path)), every="1d", metric="f1")
    # Workers that offer no capacity: they only run their periodic tasks (no job is started).
    idle = Resources.model_construct(cpu_threads=0, memory_mb=0, gpus=0)
    workers = [
        Worker(db, settings, capacity=idle, worker_id=f"w{i}", tasks=worker_tasks(db, settings))
        for i in range(2)
    ]
    barrier = threading.Barrier(2)

    def tick(worker: Worker) -> None:
        barrier.wait()
        worker.tick()

    threads = [threading.Thread(target=tick, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    jobs = JobService(db, jobs_dir=settings.jobs_dir).list_jobs(kind="eval")
    assert len(jobs) == 1
    assert jobs[0].config["schedule"] == made.id and jobs[0].config["model"] == "bot:prod"
    assert jobs[0].config["metrics"] == ["f1"] and jobs[0].created_by == f"schedule:{made.id}"
    assert schedules.get(made.id).next_due_at > utcnow() + timedelta(hours=23)
    # Not due any more: later ticks queue nothing.
    for worker in workers:
        worker.tick()
    assert len(JobService(db, jobs_dir=settings.jobs_dir).list_jobs(kind="eval")) == 1


def test_concurrent_claims_hand_each_schedule_to_one_caller(db: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    suite = str(_suite(tmp_path))
    for _ in range(3):
        ScheduleService(db, settings).add(model="bot:prod", suite_path=suite, every="1h")
    barrier = threading.Barrier(4)
    claimed: list[list[int]] = []

    def claim() -> None:
        barrier.wait()
        claimed.append([s.id for s in ScheduleService(db, settings).claim_due()])

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = sorted(i for ids in claimed for i in ids)
    assert everything == [1, 2, 3]  # each exactly once across the four callers


def test_the_queued_job_records_the_drop_and_flags(db: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    schedules = ScheduleService(db, settings)
    made = schedules.add(
        model="bot:prod", suite_path=str(_suite(tmp_path)), every="1d", max_drop=0.03, backflow=False
    )
    [(schedule, job)] = enqueue_due(db, settings)
    assert job.config == job_config(schedule) | {"dataset": None, "split": "test", "max_tokens": 128}
    suite = load_suite(Path(made.suite_path or ""))
    runs = EvalService(db)

    def stored(value: float):  # type: ignore[no-untyped-def]
        items = [ItemResult(i.id, "答", {"f1": value}) for i in suite.items]
        return runs.record_run(model_ref="bot@1", suite=suite, result=RunResult(items=items))

    first = schedules.record(schedules.get(made.id), stored(0.80))
    assert not first.flagged and first.previous is None
    second = schedules.record(schedules.get(made.id), stored(0.76))  # 5% relative drop
    assert second.flagged and second.drop is not None and abs(second.drop - 0.05) < 1e-9
    saved = schedules.get(made.id)
    assert saved.flagged and saved.backflow_dataset is None and not saved.backflow  # backflow off
    # Recording keeps the due time the claim set (a day ahead), it does not reschedule.
    assert saved.next_due_at > utcnow() + timedelta(hours=23)
