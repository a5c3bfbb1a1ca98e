"""Transform steps: each makes a new dataset version with a report.

    clean      strip, width normalisation, invisible characters, lowercase on request, drop empty
    dedup      exact, then near-duplicate (MinHash LSH) removal
    length     drop rows outside min_chars / max_chars
    sensitive  drop or mask rows with listed words
    split      train / validation / test with a fixed seed
    augment    synonym replacement (Chinese, English), variants marked synthetic
    backtranslate  paraphrases through a served model (engine interface), marked synthetic
    pii        mask (or drop rows with) personal data, with the governance PII detectors

``TransformService.run(ref, steps, params)`` applies the steps in order; every step's output is
committed as its own version (parent = the previous step's version, transform = {name, version,
params}), so each intermediate result stays addressable and reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from stratum.data.schemas import DatasetVersion, Transform
from stratum.data.service import DatasetService
from stratum.data.transforms import augment, backtranslate, clean, dedup, filters, pii, split
from stratum.data.transforms.base import Step, StepFn, merged_params
from stratum.engine.base import TextEngine
from stratum.errors import InvalidRequest

STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        clean.STEP,
        dedup.STEP,
        filters.LENGTH,
        filters.SENSITIVE,
        pii.STEP,
        split.STEP,
        augment.STEP,
        backtranslate.STEP,
    )
}


def available_steps() -> dict[str, Step]:
    return dict(STEPS)


class TransformService:
    """Serves: the CLI (``stratum data transform``) and the admin API (POST …/transform)."""

    def __init__(
        self, datasets: DatasetService, *, engine_for: Callable[[str], TextEngine] | None = None
    ) -> None:
        """``engine_for(model)`` gives the engine steps that call a model use (``backtranslate``)."""
        self.datasets = datasets
        self.engine_for = engine_for

    def _apply_fn(self, step: Step, params: dict[str, Any]) -> StepFn:
        if step.name != backtranslate.STEP.name:
            return step.apply
        if self.engine_for is None:
            return step.apply  # refuses with a message
        if not params.get("model"):
            raise InvalidRequest("backtranslate needs model=NAME (a served model)", param="params")
        return partial(backtranslate.apply_with, self.engine_for(str(params["model"])))

    def run(
        self,
        ref: str,
        steps: list[str],
        params: dict[str, dict[str, Any]] | None = None,
        *,
        project: str | None = None,
        actor: str = "local",
        on_step: Callable[[int, int, str], None] | None = None,
    ) -> list[DatasetVersion]:
        """Apply ``steps`` in order from ``ref``; ``on_step(i, n, name)`` is called as each starts."""
        known = available_steps()
        params = params or {}
        for name in [*steps, *params]:
            if name not in known:
                raise InvalidRequest(f"unknown step {name!r}; steps: {', '.join(known)}", param="steps")
        resolved = [(known[name], merged_params(known[name], params.get(name, {}))) for name in steps]
        current = self.datasets.get(ref, project=project)
        rows = self.datasets.load_rows(current)
        made: list[DatasetVersion] = []
        for position, (step, step_params) in enumerate(resolved, start=1):
            if on_step is not None:
                on_step(position, len(resolved), step.name)
            rows, report = self._apply_fn(step, step_params)(rows, current.format, step_params)
            if not rows:
                raise InvalidRequest(
                    f"step {step.name!r} would leave {current.ref} with no rows; nothing was saved after "
                    f"{made[-1].ref if made else current.ref}",
                    param="steps",
                )
            current = self.datasets.commit_version(
                name=current.dataset,
                project=current.project,
                fmt=current.format,
                rows=rows,
                parent=current,
                transform=Transform(name=step.name, params={"step_version": step.version, **step_params}),
                report=report,
                actor=actor,
            )
            made.append(current)
        return made
