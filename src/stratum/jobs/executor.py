"""How a worker runs one attempt: ``Executor.start(...) -> Execution``.

``ProcessExecutor`` (the default) starts ``python -m stratum.jobs.child`` in a new session with the
job's threads and GPUs in its environment and its output appended to the job's log.
``ThreadExecutor`` runs the same child ``main`` in a thread of the worker: a fake for fast tests
only, since a crash there is the worker's crash. ``RayExecutor`` (``ray_executor.py``,
``STRATUM_EXECUTOR=ray``) runs the same child as a Ray task on a cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import Protocol

from stratum.jobs import child
from stratum.settings import Settings

# Seconds between SIGTERM (the job may save a checkpoint) and SIGKILL.
TERMINATE_GRACE_S = 10.0


class Execution(Protocol):
    def poll(self) -> int | None:
        """The exit code once finished (negative: killed by that signal), else ``None``."""

    def terminate(self) -> None:
        """Ask the attempt to stop (it will be killed if it does not within the grace period)."""

    def wait(self, timeout: float | None = None) -> int | None: ...


class Executor(Protocol):
    def start(
        self,
        *,
        spec_path: Path,
        entry: str,
        log_path: Path,
        threads: int,
        gpus: list[int],
        env: dict[str, str],
    ) -> Execution: ...


class _Process:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._killer: threading.Timer | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self._killer is not None:
            self._killer.cancel()
        return code

    def terminate(self) -> None:
        if self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        if self._killer is None:
            self._killer = threading.Timer(TERMINATE_GRACE_S, self._signal, args=(signal.SIGKILL,))
            self._killer.daemon = True
            self._killer.start()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _signal(self, sig: int) -> None:
        if self.process.poll() is None:
            # The whole process group: a job's own subprocesses (data loaders …) go with it.
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)


class ProcessExecutor:
    def start(
        self,
        *,
        spec_path: Path,
        entry: str,
        log_path: Path,
        threads: int,
        gpus: list[int],
        env: dict[str, str],
    ) -> _Process:
        env = dict(os.environ) | env
        env |= {
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
            "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
            "PYTHONUNBUFFERED": "1",
            child.WATCH_PARENT_ENV: "1",
        }
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "stratum.jobs.child", str(spec_path), entry],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return _Process(process)


class _Thread:
    def __init__(self, thread: threading.Thread, box: list[int]) -> None:
        self.thread, self.box = thread, box

    def poll(self) -> int | None:
        return None if self.thread.is_alive() else (self.box[0] if self.box else 1)

    def terminate(self) -> None:
        """A thread cannot be stopped from outside; the fake lets it finish."""

    def wait(self, timeout: float | None = None) -> int | None:
        self.thread.join(timeout)
        return self.poll()


class ThreadExecutor:
    """Fake for tests: the child's ``main`` in a thread (no isolation, no thread limits)."""

    def start(
        self,
        *,
        spec_path: Path,
        entry: str,
        log_path: Path,
        threads: int,
        gpus: list[int],
        env: dict[str, str],
    ) -> _Thread:
        box: list[int] = []

        def target() -> None:
            with log_path.open("a", encoding="utf-8") as log, redirect_stdout(log), redirect_stderr(log):
                box.append(child.main([str(spec_path), entry]))

        thread = threading.Thread(target=target, name=f"job-{spec_path.parent.parent.name}", daemon=True)
        thread.start()
        return _Thread(thread, box)


def make_executor(settings: Settings) -> Executor:
    """The executor ``STRATUM_EXECUTOR`` names (Ray is imported only when asked for)."""
    if settings.executor == "ray":
        from stratum.jobs.ray_executor import RayExecutor

        return RayExecutor(settings.ray_address)
    return ProcessExecutor()
