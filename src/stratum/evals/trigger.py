"""The periodic trigger of scheduled re-evaluation: run by every job worker.

Every ``STRATUM_EVAL_SCHEDULE_POLL`` seconds a worker claims the due schedules (``claim_due``: a
conditional UPDATE, so with several workers exactly one gets each) and queues one ``eval`` job per
schedule; the job scores the alias's current version, and its ``schedule`` setting makes it
compare with the previous run, flag a drop and build the backflow dataset (``ScheduleService.record``).
A crash between the claim and the queueing skips that one period (the next is claimed as usual).
"""

from __future__ import annotations

import logging

from stratum.evals.schedule import Schedule, ScheduleService
from stratum.jobs.schemas import JobPublic, JobSubmit
from stratum.jobs.service import JobService
from stratum.jobs.worker import Periodic
from stratum.settings import Settings
from stratum.storage import Database, utcnow

log = logging.getLogger(__name__)


def job_config(schedule: Schedule) -> dict[str, object]:
    config: dict[str, object] = {"model": schedule.model, "schedule": schedule.id}
    if schedule.suite_path is not None:
        config["suite"] = schedule.suite_path
    else:
        config |= {"dataset": schedule.dataset_ref, "split": schedule.split}
    if schedule.metric not in ("accuracy", "nll"):  # those come with their suite kinds
        config["metrics"] = [schedule.metric]
    return config


def enqueue_due(db: Database, settings: Settings) -> list[tuple[Schedule, JobPublic]]:
    """Claim the due schedules and queue their eval jobs (platform jobs, actor ``schedule:ID``)."""
    jobs = JobService(db, jobs_dir=settings.jobs_dir)
    queued = []
    for schedule in ScheduleService(db, settings).claim_due(utcnow()):
        try:
            spec = JobSubmit(
                kind="eval", name=f"schedule {schedule.id}: {schedule.model}", config=job_config(schedule)
            )
            job = jobs.submit(
                spec,
                actor=f"schedule:{schedule.id}",
            )
        except Exception:
            log.warning("could not queue the eval of schedule %s", schedule.id, exc_info=True)
            continue
        log.info("eval schedule %s (%s) queued job %s", schedule.id, schedule.model, job.id)
        queued.append((schedule, job))
    return queued


def worker_tasks(db: Database, settings: Settings) -> list[Periodic]:
    """What a worker runs besides jobs (``run_worker(..., tasks=worker_tasks)``)."""
    if settings.eval_schedule_poll <= 0:
        return []
    return [Periodic("eval schedules", settings.eval_schedule_poll, lambda: enqueue_due(db, settings))]
