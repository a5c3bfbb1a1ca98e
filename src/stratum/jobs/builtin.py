"""Built-in job kinds that need nothing but the queue: ``sleep`` (a smoke test of a worker)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratum.errors import InvalidRequest
from stratum.jobs.context import JobContext


class SleepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=1.0, ge=0, le=86_400, description="Total time to sleep.")
    steps: int = Field(default=10, ge=1, le=100_000, description="Progress reports along the way.")
    message: str = Field(default="", max_length=200, description="Printed to the log at each step.")


def validate_sleep(config: dict[str, Any]) -> dict[str, Any]:
    try:
        return SleepConfig(**config).model_dump()
    except ValidationError as exc:
        raise InvalidRequest(f"invalid sleep config: {exc}", param="config") from None


def sleep(context: JobContext) -> dict[str, Any]:
    config = SleepConfig(**context.config)
    for step in range(1, config.steps + 1):
        time.sleep(config.seconds / config.steps)
        context.progress(step, config.steps)
        context.log(f"step {step}/{config.steps} {config.message}".rstrip())
    context.metrics["slept_s"] = config.seconds
    return {"steps": config.steps}
