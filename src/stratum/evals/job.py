"""The ``eval`` job kind: score a model version on a suite on a worker, reporting progress.

Config::

    {"model": "bot:prod", "suite": "/path/suite.jsonl"}        # or
    {"model": "bot@3", "dataset": "客服@2", "split": "test", "metrics": ["f1"], "max_tokens": 128}

The run is stored like ``stratum eval run`` stores it (with lineage); the job's result names it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stratum.errors import InvalidRequest
from stratum.jobs.context import JobContext


class EvalJobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    suite: str | None = Field(default=None, description="Path of a JSONL suite on the worker.")
    dataset: str | None = Field(default=None, description="A dataset version; its split is the suite.")
    split: str | None = "test"
    metrics: list[str] | None = None
    max_tokens: int = Field(default=128, ge=1, le=8192)
    schedule: int | None = Field(
        default=None, description="The eval schedule that queued this run (its drop check follows)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EvalJobConfig:
        if (self.suite is None) == (self.dataset is None):
            raise ValueError("give exactly one of 'suite' or 'dataset'")
        return self


def validate(config: dict[str, Any]) -> dict[str, Any]:
    try:
        return EvalJobConfig(**config).model_dump()
    except ValidationError as exc:
        messages = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise InvalidRequest(f"invalid eval config: {messages}", param="config") from None


def load_suite_for(db: Any, settings: Any, config: EvalJobConfig) -> tuple[Any, str | None]:
    if config.suite is not None:
        from stratum.evals.suites import load_suite

        return load_suite(Path(config.suite)), None
    from stratum.data import DatasetService
    from stratum.evals.datasets import dataset_suite

    assert config.dataset is not None
    return dataset_suite(DatasetService(db, settings), config.dataset, split=config.split)


def evaluate(
    db: Any,
    settings: Any,
    *,
    model: str,
    suite: Any,
    dataset_ref: str | None = None,
    metrics: list[str] | None = None,
    max_tokens: int = 128,
    actor: str = "system",
    on_progress: Any = None,
) -> Any:
    """Resolve ``model`` now, answer ``suite`` with it, store and return the run (an ``EvalRun``)."""
    from stratum.evals.runner import run_suite
    from stratum.evals.service import EvalService
    from stratum.registry.engines import serve_version
    from stratum.registry.service import RegistryService

    registry = RegistryService(db)
    version = registry.resolve(model)

    async def answer() -> Any:
        async with serve_version(registry, version, settings) as engine:
            return await run_suite(
                engine, suite, metrics=metrics, max_tokens=max_tokens, on_progress=on_progress
            )

    result = asyncio.run(answer())
    return EvalService(db).record_run(
        model_ref=version.ref, suite=suite, result=result, actor=actor, dataset_ref=dataset_ref
    )


def run(context: JobContext) -> dict[str, Any]:
    from stratum.settings import Settings
    from stratum.storage import Database

    config = EvalJobConfig(**context.config)
    settings = Settings()
    with Database(settings.resolved_database_url) as db:
        suite, dataset_ref = load_suite_for(db, settings, config)
        if suite.kind == "perplexity":
            raise InvalidRequest(
                "perplexity suites are not run as jobs yet; use stratum eval run", param="suite"
            )
        context.log(f"evaluating {config.model} on {suite.name} ({len(suite.items)} items)")

        def progress(done: int, total: int) -> None:
            if done == total or done % max(1, total // 20) == 0:
                context.progress(done, total, message=f"{done}/{total} items")

        saved = evaluate(
            db,
            settings,
            model=config.model,
            suite=suite,
            dataset_ref=dataset_ref,
            metrics=config.metrics,
            max_tokens=config.max_tokens,
            actor=f"job:{context.job_id}",
            on_progress=progress,
        )
        outcome = None
        if config.schedule is not None:
            from stratum.evals.schedule import ScheduleService

            schedules = ScheduleService(db, settings)
            outcome = schedules.record(schedules.get(config.schedule), saved, actor=f"job:{context.job_id}")
    context.metrics.update(saved.metrics)
    context.log(f"run {saved.id}: " + ", ".join(f"{k} {v:.4f}" for k, v in saved.metrics.items()))
    result = {"run": saved.id, "model_ref": saved.model_ref, "items": saved.items, "metrics": saved.metrics}
    if outcome is not None:
        context.log(
            f"schedule {config.schedule}: "
            + ((outcome.schedule.flag_reason or "flagged") if outcome.flagged else "no drop beyond the limit")
        )
        result["schedule"] = {
            "id": config.schedule,
            "previous": outcome.previous,
            "drop": outcome.drop,
            "flagged": outcome.flagged,
            "backflow_dataset": outcome.schedule.backflow_dataset if outcome.flagged else None,
            "backflow_rows": outcome.backflow_rows,
        }
    return result
