"""Test-only entry points: the real ``sft`` handler, slowed between steps so a test can kill it
mid-run (the pause is outside the training math: it only delays progress reports)."""

from __future__ import annotations

import time
from typing import Any

from stratum.jobs import JobContext
from stratum.training import sft

STEP_PAUSE_S = 0.3


class _SlowContext(JobContext):
    def progress(self, step: int, total: int | None = None, **fields: Any) -> None:
        super().progress(step, total, **fields)
        if self.attempt == 1:  # the kill lands in the first attempt; a resumed one runs at full speed
            time.sleep(STEP_PAUSE_S)


def slow_sft(context: JobContext) -> dict[str, Any]:
    slow = _SlowContext(**{name: getattr(context, name) for name in context.__dataclass_fields__})
    result = sft.run(slow)
    context.metrics.update(slow.metrics)
    return result
