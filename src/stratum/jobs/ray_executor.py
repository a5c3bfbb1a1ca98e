"""``RayExecutor`` (``STRATUM_EXECUTOR=ray``): a job attempt as a Ray task, for multi-machine pools.

The worker still claims, heartbeats and records jobs exactly as with the local executor; only where
the attempt runs changes. The Ray task (on whatever node has the CPUs/GPUs the job asked for)
starts the same ``python -m stratum.jobs.child`` process the local executor starts, in its own
session, with output appended to the job's log. So progress, result and error files, logs and the
child's SIGTERM handling (checkpoints) are the same code path on both executors.

Cancel: ``terminate()`` asks Ray to interrupt the task (``ray.cancel``, not forced); the task then
sends SIGTERM to the child's process group and SIGKILL after the same grace period as the local
executor. If the task itself does not end within that grace (a node gone silent) the worker forces
it (``ray.cancel(force=True)`` kills the Ray worker process).

Requirements on a cluster: every node has stratum installed (the task imports this module) and
sees the worker's ``STRATUM_HOME`` at the same path (a shared filesystem: the spec, progress files
and log live there), and the store URL must be reachable from the nodes (PostgreSQL, not a local
SQLite file, once more than one machine is involved).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from stratum.errors import InvalidRequest
from stratum.jobs import child
from stratum.jobs.executor import TERMINATE_GRACE_S

log = logging.getLogger(__name__)

# Extra seconds after the child's grace period before the Ray task itself is force-cancelled.
_FORCE_AFTER_S = 5.0
# How often the task checks on its child.
_CHILD_POLL_S = 0.1


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise InvalidRequest(
            "STRATUM_EXECUTOR=ray needs Ray: pip install 'stratum[ray]'", param="executor"
        ) from exc
    return ray


def run_attempt(spec_path: str, entry: str, log_path: str, threads: int, env: dict[str, str]) -> int:
    """The Ray task body: run the job's child process to its end and return its exit code.

    Ray interrupts a cancelled task with ``KeyboardInterrupt``; the child then gets SIGTERM (it may
    write a checkpoint) and SIGKILL after ``TERMINATE_GRACE_S``.
    """
    full_env = dict(os.environ) | env
    full_env |= {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": full_env.get("HF_HUB_OFFLINE", "1"),
        "PYTHONUNBUFFERED": "1",
        child.WATCH_PARENT_ENV: "1",  # the Ray worker process is the parent: die with it
    }
    # Ray sets CUDA_VISIBLE_DEVICES for the GPUs it assigned to this task; the child inherits it.
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stratum.jobs.child", spec_path, entry],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    try:
        while (code := process.poll()) is None:
            time.sleep(_CHILD_POLL_S)
        return code
    except BaseException:  # KeyboardInterrupt from ray.cancel, or the task being torn down
        _stop(process)
        raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class _RayAttempt:
    def __init__(self, ray: Any, ref: Any) -> None:
        self._ray, self.ref = ray, ref
        self._code: int | None = None
        self._forcer: threading.Timer | None = None

    def poll(self) -> int | None:
        if self._code is not None:
            return self._code
        ready, _ = self._ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            self._code = int(self._ray.get(self.ref))
        except self._ray.exceptions.TaskCancelledError:
            self._code = -signal.SIGTERM
        except self._ray.exceptions.RayError as error:
            # The Ray worker or its node died (or the task raised): a failed attempt, like a crash.
            log.warning("ray task of a job attempt failed: %s", type(error).__name__)
            self._code = -signal.SIGKILL
        if self._forcer is not None:
            self._forcer.cancel()
        return self._code

    def terminate(self) -> None:
        if self.poll() is not None or self._forcer is not None:
            return
        with suppress(Exception):  # already finished between poll and cancel
            self._ray.cancel(self.ref, force=False)
        self._forcer = threading.Timer(TERMINATE_GRACE_S + _FORCE_AFTER_S, self._force)
        self._forcer.daemon = True
        self._forcer.start()

    def _force(self) -> None:
        if self.poll() is None:
            with suppress(Exception):
                self._ray.cancel(self.ref, force=True)

    def wait(self, timeout: float | None = None) -> int | None:
        ready, _ = self._ray.wait([self.ref], timeout=timeout)
        return self.poll() if ready else None


class RayExecutor:
    """Runs attempts as Ray tasks on ``ray.init(address=...)`` (``None``: a local Ray instance,
    unless this process already joined one)."""

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=address or None, **init_kwargs)
        self._ray = ray
        # Ray retries nothing itself: attempts and retries are the job queue's business.
        self._task = ray.remote(max_retries=0)(run_attempt)

    def start(
        self,
        *,
        spec_path: Path,
        entry: str,
        log_path: Path,
        threads: int,
        gpus: list[int],
        env: dict[str, str],
    ) -> _RayAttempt:
        # Ray places the task on a node with the resources the job asked for; its own GPU ids are
        # Ray's (CUDA_VISIBLE_DEVICES in the task), so the worker's local ids only give the count.
        options = {"num_cpus": threads, "num_gpus": len(gpus)}
        ref = self._task.options(**options).remote(str(spec_path), entry, str(log_path), threads, env)
        return _RayAttempt(self._ray, ref)
