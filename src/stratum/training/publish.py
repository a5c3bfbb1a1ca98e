"""The tail every training job shares: metrics → save → register (with lineage).

In a data-parallel run only rank 0 publishes: the other ranks hold the same weights (their
gradients are all-reduced every step) and return an empty result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stratum.jobs import JobContext
from stratum.registry.lineage import LineageService
from stratum.registry.service import RegistryService
from stratum.storage import Database
from stratum.training import distributed
from stratum.training import model as parts
from stratum.training.config import TrainConfig
from stratum.training.loop import LoopResult


def publish(
    context: JobContext,
    db: Database,
    registry: RegistryService,
    *,
    config: TrainConfig,
    model: torch.nn.Module,
    tokenizer: Any,
    named: list[tuple[str, torch.nn.Parameter]],
    loop: LoopResult,
    base_dir: Path,
    base_ref: str | None,
    dataset_ref: str | None,
    extra_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record the job's metrics, write its outputs and register them; the job's result."""
    trainable = sum(p.numel() for _, p in named)
    total = parts.parameter_count(model)
    context.metrics.update(parts.job_metrics(loop, trainable=trainable, total=total))
    context.metrics.update(extra_metrics or {})
    if not distributed.is_main():
        return {}
    merge = config.register_output and base_ref is None
    paths = parts.save_outputs(context, model, tokenizer, config, merge=merge, base_dir=base_dir)
    if not config.register_output:
        return paths
    return parts.register(
        context,
        registry,
        LineageService(db),
        config=config,
        base_dir=base_dir,
        base_ref=base_ref,
        dataset_ref=dataset_ref,
        paths=paths,
        metrics=context.metrics,
    )
