"""The periodic trigger: workers claim due eval schedules (exactly one of two wins each) and queue
one ``eval`` job per schedule; the job's drop check flags the schedule."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from stratum.data import DatasetService
from stratum.evals.runner import ItemResult, RunResult
from stratum.evals.schedule import ScheduleService
from stratum.evals.service import EvalService
from stratum.evals.suites import load_suite
from stratum.evals.tables import EvalScheduleRow
from stratum.evals.trigger import enqueue_due, job_config, worker_tasks
from stratum.jobs import JobService, Resources
from stratum.jobs.executor import ThreadExecutor
from stratum.jobs.worker import Worker
from stratum.registry.feedback import FeedbackService
from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database, utcnow
from tests.cli.conftest import FakeOpenAI, fake_openai  # noqa: F401  (fixture)


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


def _write_suite(path: Path, matching: int) -> None:
    rows = [
        {"id": f"q{i}", "prompt": f"问{i}", "answer": "你好，我是测试模型。" if i < matching else "不对"}
        for i in range(4)
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")


@pytest.mark.slow
def test_a_worker_runs_the_schedule_flags_the_drop_and_backflows(
    fake_openai: FakeOpenAI,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole loop on one worker: due → eval job → stored run; the suite gets harder (the
    production score drops 67%) → the next run flags the alias and builds the backflow dataset
    from the thumbs-down correction whose prompt the gateway kept."""
    monkeypatch.setenv("FAKE_KEY", fake_openai.api_key)
    settings = Settings(eval_schedule_poll=0.01)  # the child's Settings() sees the same home
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
        _write_suite(suite, matching=3)
        schedules = ScheduleService(db, settings)
        made = schedules.add(
            model="bot:prod", suite_path=str(suite), every="1h", metric="exact_match", max_drop=0.03
        )
        jobs = JobService(db, jobs_dir=settings.jobs_dir)
        worker = Worker(
            db,
            settings,
            executor=ThreadExecutor(),
            capacity=Resources(cpu_threads=1, memory_mb=1024, gpus=0),
            tasks=worker_tasks(db, settings),
            poll_s=0.05,
        )

        def run_once() -> dict[str, object]:
            deadline = time.monotonic() + 60
            while True:
                worker.tick()
                done = [j for j in jobs.list_jobs(kind="eval") if j.status in ("succeeded", "failed")]
                if len(done) == run_once.count + 1:  # type: ignore[attr-defined]
                    run_once.count += 1  # type: ignore[attr-defined]
                    newest = max(done, key=lambda j: j.created_at)
                    assert newest.status == "succeeded", newest.error
                    return newest.result
                assert time.monotonic() < deadline, "timed out"
                time.sleep(0.05)

        run_once.count = 0  # type: ignore[attr-defined]
        first = run_once()
        assert first["metrics"] == {"exact_match": 0.75}
        assert first["schedule"] == {
            "id": made.id,
            "previous": None,
            "drop": None,
            "flagged": False,
            "backflow_dataset": None,
            "backflow_rows": 0,
        }
        assert schedules.get(made.id).last_run_id == first["run"]

        # A user's thumbs-down with a correction, on a response whose prompt the gateway kept.
        log = ResponseLog(db)
        log.remember(
            ServedResponse(
                request_id="req-1",
                model="bot",
                version_ref="bot@1",
                status=200,
                latency_ms=5.0,
                response_id="chatcmpl-1",
                prompt=[{"role": "user", "content": "退货运费谁出？"}],
                answer="你好，我是测试模型。",
            )
        )
        FeedbackService(db, log).submit(
            response_id="chatcmpl-1",
            thumbs="down",
            correction="七天无理由退货，运费由买家承担。",
            feedback_id="fb-1",
        )
        _write_suite(suite, matching=1)
        with db.session() as session:  # due again now
            session.get(EvalScheduleRow, made.id).next_due_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
        second = run_once()
        assert second["metrics"] == {"exact_match": 0.25}
        assert (
            second["schedule"]["flagged"] is True
            and second["schedule"]["backflow_dataset"] == "bot-backflow@1"
        )
        saved = schedules.get(made.id)
        assert saved.flagged and "exact_match 0.7500 → 0.2500" in (saved.flag_reason or "")
        rows = DatasetService(db, settings).rows("bot-backflow@1")
        assert rows == [
            {
                "messages": [
                    {"role": "user", "content": "退货运费谁出？"},
                    {"role": "assistant", "content": "七天无理由退货，运费由买家承担。"},
                ],
                "label": "correction",
                "confidence": 1.0,
            }
        ]
    finally:
        db.dispose()
