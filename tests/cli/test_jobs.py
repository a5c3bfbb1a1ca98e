"""``stratum jobs …`` and ``stratum worker`` as a user meets them: the worker and the commands that
meet it across processes (submit, list, logs --follow, cancel) are real subprocesses on one store;
the other reads and the error messages run in-process (``invoke_stratum``: no interpreter start-up)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratum.jobs import JobPublic, JobService
from stratum.settings import Settings
from stratum.storage import Database

Run = Any

pytestmark = pytest.mark.slow


def _json(run: Run, *args: str) -> Any:
    result = run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _wait(check: Callable[[JobPublic], bool], job_id: str, timeout: float = 90.0) -> None:
    """Poll the job in-process until ``check`` holds: a `stratum jobs show` subprocess per poll would
    start an interpreter every few tenths of a second (the test shows the results with the CLI)."""
    db = Database(Settings().resolved_database_url)
    try:
        jobs = JobService(db, jobs_dir=Settings().jobs_dir)
        deadline = time.monotonic() + timeout
        while not check(jobs.get(job_id)):
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)
    finally:
        db.dispose()


def test_submit_list_logs_cancel_with_a_worker(run_stratum: Run, invoke_stratum: Run, tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("seconds: 0.5\nsteps: 5\nmessage: 你好，世界\n", encoding="utf-8")
    job = _json(
        run_stratum, "jobs", "submit", "sleep", "--config", str(config), "--name", "冒烟", "--priority", "5"
    )
    assert job["status"] == "queued" and job["config"]["message"] == "你好，世界"
    listed = _json(invoke_stratum, "jobs", "list")
    assert [j["id"] for j in listed] == [job["id"]]
    table = run_stratum("jobs", "list")
    assert job["id"] in table.stdout and "冒烟" in table.stdout

    script = Path(sys.executable).parent / "stratum"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(script), "worker", "--cpu-threads", "2"], env=env, stdout=worker_log, stderr=subprocess.STDOUT
    )
    try:
        followed = run_stratum("jobs", "logs", job["id"], "--follow")
        assert followed.returncode == 0, followed.stderr
        assert "step 5/5 你好，世界" in followed.stdout and "job succeeded" in followed.stdout
        shown = _json(invoke_stratum, "jobs", "show", job["id"])
        assert shown["status"] == "succeeded" and shown["progress"]["step"] == 5

        long = _json(invoke_stratum, "jobs", "submit", "sleep", "--config", _long(tmp_path))
        _wait(lambda job: job.progress.get("step", 0) >= 1, long["id"])
        cancelled = run_stratum("jobs", "cancel", long["id"])
        assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout
        _wait(lambda job: job.status == "cancelled", long["id"])
        assert _json(invoke_stratum, "jobs", "show", long["id"])["status"] == "cancelled"
        retried = invoke_stratum("jobs", "retry", long["id"])
        assert retried.returncode == 0 and "queued again" in retried.stdout
        _wait(lambda job: job.status == "running", long["id"])
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        worker_log.close()
        assert code == 0, (tmp_path / "worker.log").read_text(encoding="utf-8")
    # The worker gave the running job back to the queue on shutdown.
    assert _json(invoke_stratum, "jobs", "show", long["id"])["status"] == "queued"


def _long(tmp_path: Path) -> str:
    path = tmp_path / "long.yaml"
    path.write_text("seconds: 600\nsteps: 600\n", encoding="utf-8")
    return str(path)


def test_mistakes_are_one_line_errors(invoke_stratum: Run, tmp_path: Path) -> None:
    missing = invoke_stratum("jobs", "show", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("error: No job 'nope'")
    unknown = invoke_stratum("jobs", "submit", "nope")
    assert unknown.returncode != 0 and "unknown job kind" in unknown.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("seconds: [1\n", encoding="utf-8")
    broken = invoke_stratum("jobs", "submit", "sleep", "--config", str(bad))
    assert broken.returncode != 0 and "not valid YAML" in broken.stderr and "Traceback" not in broken.stderr
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("seconds: -1\n", encoding="utf-8")
    rejected = invoke_stratum("jobs", "submit", "sleep", "--config", str(invalid))
    assert rejected.returncode != 0 and "seconds" in rejected.stderr
    assert len(rejected.stderr.strip().splitlines()) == 1
    no_project = invoke_stratum("jobs", "submit", "sleep", "--project", "acme/nope")
    assert no_project.returncode != 0 and "acme" in no_project.stderr
    held = _json(invoke_stratum, "jobs", "submit", "sleep", "--exclusive-key", "夜间")
    assert held["exclusive_key"] == "夜间"
    second = invoke_stratum("jobs", "submit", "sleep", "--exclusive-key", "夜间")
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert (
        second.stderr.strip()
        == f"error: job {held['id']} (queued) holds exclusive key '夜间'; wait for it or cancel it"
    )
