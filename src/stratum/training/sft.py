"""``sft`` jobs: supervised fine-tuning on chat data, LoRA (default) or full, resumable exactly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from stratum.jobs import JobContext
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database
from stratum.training import distributed
from stratum.training import model as parts
from stratum.training.config import TrainConfig
from stratum.training.data import IGNORE, SFTExample, sft_examples
from stratum.training.loop import LoopSettings, steps_for, train
from stratum.training.publish import publish


def loop_settings(config: TrainConfig, examples: int) -> LoopSettings:
    return LoopSettings(
        total_steps=steps_for(
            examples=examples,
            batch_size=config.batch_size,
            grad_accum=config.grad_accum,
            max_steps=config.max_steps,
            epochs=config.epochs,
        ),
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        checkpoint_every=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
    )


def label_tokens(batch: Sequence[SFTExample]) -> float:
    """What the SFT loss is a mean over: the tokens it learns (each example's first is never one)."""
    return float(sum(sum(1 for label in e.labels[1:] if label != IGNORE) for e in batch))


def run(context: JobContext) -> dict[str, Any]:
    from transformers import AutoTokenizer

    config = TrainConfig(**context.config)
    if distributed.should_launch(config.nproc):
        return distributed.launch(context, "stratum.training.sft:run", config.nproc)
    torch.set_num_threads(distributed.threads(context.resources.cpu_threads))
    settings = Settings()
    with Database(settings.resolved_database_url) as db:
        registry = RegistryService(db)
        base_dir, base_ref = parts.resolve_base(registry, config)
        rows, source, dataset_ref = parts.load_rows(db, config, project=context.project)
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        examples = sft_examples(
            tokenizer,
            rows,
            max_length=config.max_length,
            train_on_prompt=config.train_on_prompt,
            source=source,
        )
        context.log(f"{len(examples)} examples from {source}; base {base_ref or base_dir}")
        model, named = parts.load_model(base_dir, config)
        padding = parts.pad_id(tokenizer)

        def loss_of(batch: list[SFTExample]) -> tuple[torch.Tensor, int]:
            ids, mask = parts.pad([e.input_ids for e in batch], padding)
            labels, _ = parts.pad([e.labels for e in batch], IGNORE)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = labels[:, 1:].reshape(-1)
            summed = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets, ignore_index=IGNORE, reduction="sum"
            )
            # Mean over the label tokens (a slice of a data-parallel batch may have none).
            return summed / max(int((targets != IGNORE).sum()), 1), int(mask.sum())

        loop = train(
            context,
            named_params=named,
            examples=examples,
            loss_of=loss_of,
            settings=loop_settings(config, len(examples)),
            checkpoint_dir=context.workdir / "checkpoints",
            weight_of=label_tokens,
        )
        return publish(
            context,
            db,
            registry,
            config=config,
            model=model,
            tokenizer=tokenizer,
            named=named,
            loop=loop,
            base_dir=base_dir,
            base_ref=base_ref,
            dataset_ref=dataset_ref,
        )
