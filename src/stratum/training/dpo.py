"""``dpo`` jobs: Direct Preference Optimisation with a LoRA adapter, resumable like SFT.

The reference policy is the base model itself — the same network with its adapter disabled — so
DPO needs no second copy of the weights (TRL does the same for PEFT models). Loss per pair:
``-log σ(β · ((log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected))))``
with log-probabilities summed over the answer tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from stratum.jobs import JobContext
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database
from stratum.training import distributed
from stratum.training import model as parts
from stratum.training.config import DPOConfig
from stratum.training.data import PreferenceExample, preference_examples
from stratum.training.loop import train
from stratum.training.publish import publish
from stratum.training.sft import loop_settings


def _answer_logprobs(
    model: torch.nn.Module, batch: list[PreferenceExample], padding: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed log-probabilities of the chosen and of the rejected answers, and tokens processed."""
    sequences, starts = [], []
    for example in batch:
        for answer in (example.chosen_ids, example.rejected_ids):
            sequences.append(example.prompt_ids + answer)
            starts.append(len(example.prompt_ids))
    ids, mask = parts.pad(sequences, padding)
    logprobs = parts.token_logprobs(model, ids, mask)
    # Token t is predicted at position t - 1: answer tokens are positions start-1 … len-2.
    answer = torch.zeros_like(logprobs)
    for row, (start, sequence) in enumerate(zip(starts, sequences, strict=True)):
        answer[row, start - 1 : len(sequence) - 1] = 1.0
    summed = (logprobs * answer).sum(-1)
    return summed[0::2], summed[1::2], int(mask.sum())


def run(context: JobContext) -> dict[str, Any]:
    from transformers import AutoTokenizer

    config = DPOConfig(**context.config)
    if distributed.should_launch(config.nproc):
        return distributed.launch(context, "stratum.training.dpo:run", config.nproc)
    torch.set_num_threads(distributed.threads(context.resources.cpu_threads))
    settings = Settings()
    with Database(settings.resolved_database_url) as db:
        registry = RegistryService(db)
        base_dir, base_ref = parts.resolve_base(registry, config)
        rows, source, dataset_ref = parts.load_rows(db, config, project=context.project)
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        examples = preference_examples(tokenizer, rows, max_length=config.max_length, source=source)
        context.log(f"{len(examples)} preference pairs from {source}; base {base_ref or base_dir}")
        model, named = parts.load_model(base_dir, config)
        padding = parts.pad_id(tokenizer)
        accuracy: list[float] = []

        def loss_of(batch: list[PreferenceExample]) -> tuple[torch.Tensor, int]:
            chosen, rejected, tokens = _answer_logprobs(model, batch, padding)
            with torch.no_grad(), model.disable_adapter():  # type: ignore[operator]
                ref_chosen, ref_rejected, _ = _answer_logprobs(model, batch, padding)
            margin = (chosen - ref_chosen) - (rejected - ref_rejected)
            accuracy.append(float((margin > 0).float().mean()))
            return -torch.nn.functional.logsigmoid(config.beta * margin).mean(), tokens

        loop = train(
            context,
            named_params=named,
            examples=examples,
            loss_of=loss_of,
            settings=loop_settings(config, len(examples)),
            checkpoint_dir=context.workdir / "checkpoints",
        )
        window = accuracy[-10:]
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
            extra_metrics={"reward_accuracy": sum(window) / len(window) if window else None},
        )
