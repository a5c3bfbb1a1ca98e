"""``python -m stratum.jobs.child RUNDIR/spec.json ENTRY``: run one attempt of a job.

The worker starts this in a fresh process (its own session, stdout and stderr appended to the job's
log), so whatever the job does — a segfault in a native kernel, an out-of-memory kill, ``kill -9``
— ends here and never in the worker or the gateway. Exit 0 with ``result.json`` is success; any
other exit is a failed attempt, with the exception's last line in ``error.txt``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType

from stratum.jobs import kinds
from stratum.jobs.context import ERROR_FILE, RESULT_FILE, JobContext, write_json

# Set by ProcessExecutor: the child ends itself when its worker process disappears.
WATCH_PARENT_ENV = "STRATUM_JOB_WATCH_PARENT"


# Seconds between two checks that the worker is still alive.
_ORPHAN_CHECK_S = 1.0


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through finally blocks (checkpoints, temp files)


def _die_with_the_worker(worker_pid: int) -> None:
    """A worker killed with SIGKILL cannot stop its children; its job is requeued when the lease
    expires. An orphaned attempt must not keep running beside the next one (both would write the
    same checkpoints), so it ends itself as soon as its parent is gone."""

    def watch() -> None:
        while os.getppid() == worker_pid:
            time.sleep(_ORPHAN_CHECK_S)
        print("the worker is gone: stopping this orphaned attempt", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    spec_path, entry = Path(argv[0]), argv[1]
    if threading.current_thread() is threading.main_thread():  # not under the ThreadExecutor fake
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if os.environ.get(WATCH_PARENT_ENV) == "1":
        _die_with_the_worker(os.getppid())
    context = JobContext.from_spec(spec_path)
    context.log(
        f"attempt {context.attempt} of job {context.job_id} ({context.kind}) started, pid {os.getpid()}"
    )
    try:
        run = kinds.load(entry)
        result = run(context) or {}
    except Exception as exc:
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}".strip()
        (context.rundir / ERROR_FILE).write_text(message.splitlines()[0][:2000], encoding="utf-8")
        context.log(f"attempt {context.attempt} failed: {message.splitlines()[0]}")
        return 1
    write_json(context.rundir / RESULT_FILE, {"result": result, "metrics": context.metrics})
    context.log(f"attempt {context.attempt} succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
