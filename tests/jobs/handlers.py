"""Job handlers used only by the worker tests (run in child processes through their dotted paths)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from stratum.jobs import JobContext


def crash(context: JobContext) -> dict[str, Any]:
    """Dies like a native crash or the OOM killer would: no exception, no cleanup."""
    context.log("about to die")
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def flaky(context: JobContext) -> dict[str, Any]:
    """Fails its first attempt, succeeds on the next one."""
    if context.attempt == 1:
        raise RuntimeError("第一次失败 (first attempt fails)")
    context.metrics["attempt"] = context.attempt
    return {"ok": True}


def forever(context: JobContext) -> dict[str, Any]:
    step = 0
    while True:
        step += 1
        context.progress(step, None, loss=1.0 / step)
        time.sleep(0.05)
