"""``Worker``: claims jobs that fit its free capacity, runs each in a child process, reports back.

One ``tick()``: requeue jobs whose worker died (expired leases), check on running children (exit →
record the attempt; heartbeat with their progress; stop the ones cancelled or lost), then claim
jobs while capacity is free. ``run()`` ticks until stopped; ``stratum worker`` and ``stratum
serve`` (unless ``STRATUM_WORKER=false``) run it. On shutdown running jobs are stopped and given
back to the queue without counting the attempt.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stratum.jobs import kinds as job_kinds
from stratum.jobs.context import ERROR_FILE, PROGRESS_FILE, RESULT_FILE, SPEC_FILE, read_json, write_json
from stratum.jobs.executor import Execution, Executor, make_executor
from stratum.jobs.scheduler import Scheduler
from stratum.jobs.schemas import Claim, Resources
from stratum.jobs.service import job_dir, log_path
from stratum.settings import Settings
from stratum.storage import Database

log = logging.getLogger(__name__)

# Share of the machine's RAM offered to jobs by default: the rest is for the OS and the gateway.
_DEFAULT_MEMORY_SHARE = 0.8
# Longest pause between two sweeps for expired leases (shorter when the lease is short).
_SWEEP_EVERY_S = 5.0


def default_capacity(settings: Settings) -> Resources:
    threads = settings.worker_cpu_threads or os.cpu_count() or 1
    memory = settings.worker_memory_mb
    if not memory:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = int(total * _DEFAULT_MEMORY_SHARE / 2**20)
    return Resources(cpu_threads=threads, memory_mb=max(memory, 1), gpus=settings.worker_gpus)


@dataclass
class Periodic:
    """Work a worker does besides jobs, every ``every_s`` seconds (e.g. queueing due eval
    schedules); supplied by higher layers, so the queue never imports them."""

    name: str
    every_s: float
    run: Callable[[], object]
    last: float = field(default=float("-inf"))


@dataclass
class _Running:
    claim: Claim
    execution: Execution
    rundir: Path
    gpus: list[int]
    stopping: bool = False


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        executor: Executor | None = None,
        kinds: Mapping[str, job_kinds.JobKind] | None = None,
        worker_id: str | None = None,
        capacity: Resources | None = None,
        poll_s: float = 1.0,
        tasks: Sequence[Periodic] = (),
    ) -> None:
        self.scheduler = Scheduler(
            db, lease_s=settings.job_lease_seconds, max_running=settings.jobs_max_running
        )
        self.jobs_dir = settings.jobs_dir
        # The child opens the same store and home as its worker, whatever its own environment says.
        self.child_env = {
            "STRATUM_HOME": str(settings.home),
            "STRATUM_DATABASE_URL": settings.resolved_database_url,
        }
        self.executor = executor or make_executor(settings)
        self.kinds = dict(job_kinds.BUILTIN_KINDS if kinds is None else kinds)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.capacity = capacity or default_capacity(settings)
        self.poll_s = poll_s
        self.tasks = list(tasks)
        self.running: dict[str, _Running] = {}
        self._stop = threading.Event()
        self._last_sweep = float("-inf")

    # -- capacity -------------------------------------------------------------------------------
    def free(self) -> Resources:
        held = [r.claim.resources for r in self.running.values()]
        return Resources.model_construct(
            cpu_threads=self.capacity.cpu_threads - sum(r.cpu_threads for r in held),
            memory_mb=self.capacity.memory_mb - sum(r.memory_mb for r in held),
            gpus=self.capacity.gpus - sum(r.gpus for r in held),
        )

    def _free_gpu_ids(self, count: int) -> list[int]:
        taken = {g for r in self.running.values() for g in r.gpus}
        return [g for g in range(self.capacity.gpus) if g not in taken][:count]

    # -- the loop -------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        # Expired leases are rare: look for them a few times per lease, not on every tick.
        if now - self._last_sweep >= min(self.scheduler.lease_s / 3, _SWEEP_EVERY_S):
            self._last_sweep = now
            for changed in self.scheduler.requeue_expired():
                log.warning("job %s lost its worker; now %s", changed.id, changed.status)
        for job_id in list(self.running):
            self._check(job_id)
        for task in self.tasks:
            if now - task.last >= task.every_s:
                task.last = now
                try:
                    task.run()
                except Exception:  # one failing task must not stop jobs (or the other tasks)
                    log.warning("worker task %r failed", task.name, exc_info=True)
        while not self._stop.is_set():
            free = self.free()
            if free.cpu_threads < 1 or free.memory_mb < 1:
                break
            claim = self.scheduler.claim(self.worker_id, free)
            if claim is None:
                break
            self._start(claim)

    def run(self) -> None:
        """Tick until ``stop()``; then stop running jobs and give them back to the queue."""
        log.info("job worker %s started with %s", self.worker_id, self.capacity.model_dump())
        try:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:  # the store may be briefly unavailable: try again next tick
                    log.warning("job worker tick failed", exc_info=True)
                self._stop.wait(self.poll_s)
        finally:
            self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self, grace_s: float = 15.0) -> None:
        for job_id, running in list(self.running.items()):
            running.execution.terminate()
            running.execution.wait(grace_s)
            self.scheduler.release(self.worker_id, job_id, running.claim.attempt)
            self._note(job_id, f"worker {self.worker_id} shut down; job given back to the queue")
            del self.running[job_id]

    # -- one job --------------------------------------------------------------------------------
    def _start(self, claim: Claim) -> None:
        workdir = job_dir(self.jobs_dir, claim.id)
        rundir = workdir / "run" / f"attempt-{claim.attempt}"
        shutil.rmtree(rundir, ignore_errors=True)
        rundir.mkdir(parents=True)
        gpus = self._free_gpu_ids(claim.resources.gpus)
        spec = claim.model_dump(mode="json") | {"workdir": str(workdir)}
        write_json(rundir / SPEC_FILE, spec)
        self._note(claim.id, f"attempt {claim.attempt} claimed by worker {self.worker_id}")
        kind = self.kinds.get(claim.kind)
        if kind is None:
            self.scheduler.finish(
                self.worker_id, claim.id, claim.attempt, ok=False, error=f"unknown job kind {claim.kind!r}"
            )
            return
        execution = self.executor.start(
            spec_path=rundir / SPEC_FILE,
            entry=kind.run,
            log_path=log_path(self.jobs_dir, claim.id),
            threads=claim.resources.cpu_threads,
            gpus=gpus,
            env=self.child_env,
        )
        self.running[claim.id] = _Running(claim, execution, rundir, gpus)

    def _check(self, job_id: str) -> None:
        running = self.running[job_id]
        claim = running.claim
        progress = read_json(running.rundir / PROGRESS_FILE)
        code = running.execution.poll()
        if code is None:
            beat = self.scheduler.heartbeat(self.worker_id, job_id, claim.attempt, progress=progress)
            if beat == "cancel" and not running.stopping:
                self._note(job_id, "cancel requested: stopping the job")
                running.stopping = True
                running.execution.terminate()
            elif beat == "lost":
                self._note(job_id, f"worker {self.worker_id} lost the lease of attempt {claim.attempt}")
                running.execution.terminate()
                running.execution.wait(30)
                del self.running[job_id]
            return
        del self.running[job_id]
        outcome = read_json(running.rundir / RESULT_FILE) if code == 0 else None
        error = None
        if outcome is None:
            error = _read_text(running.rundir / ERROR_FILE) or _describe_exit(code)
        status = self.scheduler.finish(
            self.worker_id,
            job_id,
            claim.attempt,
            ok=outcome is not None,
            error=error,
            result=(outcome or {}).get("result"),
            metrics=(outcome or {}).get("metrics"),
            progress=progress,
        )
        self._note(job_id, f"attempt {claim.attempt} ended ({_describe_exit(code)}); job {status}")

    def _note(self, job_id: str, message: str) -> None:
        """A line from the worker itself in the job's log (attempt boundaries, cancels, losses)."""
        path = log_path(self.jobs_dir, job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} [worker] {message}\n")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by signal {-code}"
    return "exit 0" if code == 0 else f"exit {code}"


def run_worker(
    settings: Settings,
    stop: threading.Event | None = None,
    tasks: Callable[[Database, Settings], Sequence[Periodic]] | None = None,
) -> None:
    """Run a worker on the configured store until ``stop`` is set (or forever); ``tasks`` makes
    its periodic work (``stratum.evals.trigger.worker_tasks``)."""
    db = Database(settings.resolved_database_url)
    db.migrate()
    worker = Worker(db, settings, tasks=tasks(db, settings) if tasks is not None else ())
    if stop is not None:
        threading.Thread(target=lambda: (stop.wait(), worker.stop()), daemon=True).start()
    try:
        worker.run()
    finally:
        db.dispose()
