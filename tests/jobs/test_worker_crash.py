"""A worker process killed with SIGKILL: its job's child ends itself, and after the lease expires
another worker requeues the job and runs it again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stratum.jobs import JobService
from stratum.storage import Database

pytestmark = pytest.mark.slow

STRATUM = str(Path(sys.executable).parent / "stratum")


def _wait(check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_worker_loses_its_job_to_another(tmp_path: Path) -> None:
    env = {**os.environ, "STRATUM_HOME": str(tmp_path / "home"), "STRATUM_JOB_LEASE_SECONDS": "3"}

    def cli(*args: str) -> str:
        done = subprocess.run([STRATUM, *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    config = tmp_path / "long.yaml"
    config.write_text("seconds: 600\nsteps: 600\n", encoding="utf-8")
    job = json.loads(cli("jobs", "submit", "sleep", "--config", str(config), "--json"))
    # Polled in-process: a `stratum jobs show` per poll is an interpreter start-up (~1 s, more under
    # load) beside the workers; the CLI shows the outcome at the end.
    store = Database(f"sqlite:///{tmp_path / 'home' / 'stratum.db'}")
    jobs = JobService(store, jobs_dir=tmp_path / "home" / "jobs")
    show = lambda: jobs.get(job["id"])  # noqa: E731

    first = subprocess.Popen(
        [STRATUM, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: (s := show()).status == "running" and "step" in s.progress)
        found = re.search(r"started, pid (\d+)", cli("jobs", "logs", job["id"]))
        assert found is not None
        child = int(found.group(1))
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        _wait(lambda: not _alive(child), timeout=30)  # the orphaned attempt ended itself
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    second = subprocess.Popen(
        [STRATUM, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(lambda: (s := show()).attempts == 2 and s.status == "running")
        assert "stopped heart-beating during attempt 1" in str(show().error)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
        store.dispose()
    shown = json.loads(cli("jobs", "show", job["id"], "--json"))
    assert shown["status"] == "queued"
