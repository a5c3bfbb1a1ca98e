"""Train the demo Llama on the tokenized corpus, nanoGPT style: packed batches, AdamW, cosine LR.

Deterministic by construction: the weights are initialised from ``recipe.seed`` inside
``torch.random.fork_rng`` (so the caller's global RNG is left untouched), the batches are shuffled
by their own generator seeded the same way, and every op used is deterministic on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from stratum.engine.demo_recipe import DemoRecipe

# Report progress about ten times per build: enough for a start-up log, not a flood.
PROGRESS_REPORTS = 10
# Train on one thread. Two threads take 16 s instead of 26 s on two idle cores, but every op of a
# model this small is a fork-join barrier, and as soon as another process wants a core (the server
# loading its encoder, a pip install, a test run) the barrier waits on a preempted thread: measured
# 80 s with two threads against 35 s with one next to a single busy process. The weights do not
# depend on the thread count (the tests check it).
TRAINING_THREADS = 1


@dataclass(frozen=True)
class TrainingResult:
    model: LlamaForCausalLM
    parameters: int
    first_loss: float
    # Mean next-token loss over the whole corpus after training (nats per token).
    final_loss: float
    seconds: float


def llama_config(recipe: DemoRecipe, *, bos_id: int, eos_id: int, pad_id: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=recipe.vocab_size,
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        # Plain multi-head attention: grouped KV heads save memory only at sizes far above ours.
        num_key_value_heads=recipe.num_heads,
        intermediate_size=recipe.intermediate_size,
        max_position_embeddings=recipe.context_length,
        # Sharing the input and output embedding halves the parameters a 2k vocabulary costs.
        tie_word_embeddings=True,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


def _learning_rate(recipe: DemoRecipe, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak (as in nanoGPT)."""
    if step < recipe.warmup_steps:
        return recipe.learning_rate * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    floor = recipe.learning_rate * recipe.min_lr_ratio
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (recipe.learning_rate - floor)


# The conversations packed into one training row.
_Row = list[Sequence[int]]


@dataclass(frozen=True)
class _Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor


def _packed_batches(
    sequences: Sequence[Sequence[int]], recipe: DemoRecipe, *, pad_id: int, generator: torch.Generator
) -> Iterator[_Batch]:
    """Endless batches of whole conversations packed into rows of ``block_size`` tokens.

    Each epoch shuffles the conversations and packs them in that order, starting a new row when the
    next one does not fit, so an epoch shows every conversation once, whole, from <|bos|> to its
    last <|im_end|> (95 rows for the bundled corpus). Position ids restart at 0 for every
    conversation: RoPE then sees the positions it sees when serving, and transformers turns restarts
    into a block-diagonal causal mask, so no conversation attends to the one packed before it.
    Measured at 130 steps of 16 rows, corpus loss: 1.58 with random windows over one stream, 1.33
    packed without the restarts, 0.91 packed with them (the mask costs ~5% per step).
    The padding at a row's end is masked out of the loss with -100.
    """
    if not sequences:
        raise ValueError("the demo corpus has no conversations")
    pending: list[_Row] = []
    while True:
        order = torch.randperm(len(sequences), generator=generator).tolist()
        pending.extend(_pack([sequences[i] for i in order], block_size=recipe.block_size))
        while len(pending) >= recipe.batch_size:
            batch, pending = pending[: recipe.batch_size], pending[recipe.batch_size :]
            yield _collate(batch, block_size=recipe.block_size, pad_id=pad_id)


def _pack(sequences: Sequence[Sequence[int]], *, block_size: int) -> list[_Row]:
    """Rows of whole conversations in the given order; a new row when the next one does not fit."""
    rows: list[_Row] = [[]]
    used = 0
    for sequence in sequences:
        ids = sequence[:block_size]
        if used + len(ids) > block_size:
            rows.append([])
            used = 0
        rows[-1].append(ids)
        used += len(ids)
    return rows


def _collate(rows: Sequence[_Row], *, block_size: int, pad_id: int) -> _Batch:
    input_ids = torch.full((len(rows), block_size), pad_id)
    labels = torch.full((len(rows), block_size), -100)
    # The padding counts positions from 0 like one more conversation, which keeps it in a block of
    # its own; it is never a label, so what it attends to does not matter.
    position_ids = torch.zeros((len(rows), block_size), dtype=torch.long)
    for r, row in enumerate(rows):
        offset = 0
        for ids in row:
            end = offset + len(ids)
            input_ids[r, offset:end] = torch.tensor(ids)
            labels[r, offset:end] = input_ids[r, offset:end]
            position_ids[r, offset:end] = torch.arange(len(ids))
            offset = end
        position_ids[r, offset:] = torch.arange(block_size - offset)
    return _Batch(input_ids=input_ids, labels=labels, position_ids=position_ids)


def _corpus_loss(model: LlamaForCausalLM, batches: Sequence[_Batch]) -> float:
    """Mean next-token loss over every token of the corpus, packed as in training."""
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            loss = model(
                input_ids=batch.input_ids,
                labels=batch.labels,
                position_ids=batch.position_ids,
                use_cache=False,
            ).loss
            # transformers averages over the labelled tokens (shifted by one); weigh batches by them.
            labelled = int((batch.labels[:, 1:] != -100).sum())
            total += loss.item() * labelled
            count += labelled
    return total / max(1, count)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_demo_model(
    recipe: DemoRecipe,
    config: LlamaConfig,
    sequences: Sequence[Sequence[int]],
    *,
    progress: Callable[[str], None],
) -> TrainingResult:
    """Train a fresh ``LlamaForCausalLM`` on ``sequences`` (one token list per conversation)."""
    pad_id = config.pad_token_id
    if pad_id is None:
        raise ValueError("the demo LlamaConfig needs a pad_token_id to pad packed rows")
    started = time.perf_counter()
    with _torch_threads(TRAINING_THREADS), torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = LlamaForCausalLM(config).float()
        # Shuffling has its own generator: the number of random draws initialisation takes can then
        # never shift the order of the batches.
        batches = _packed_batches(
            sequences, recipe, pad_id=pad_id, generator=torch.Generator().manual_seed(recipe.seed)
        )
        parameters = sum(p.numel() for p in model.parameters())

        # No weight decay: the toy is meant to memorise its corpus, not to generalise.
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=recipe.learning_rate, betas=(0.9, 0.95), weight_decay=0.0
        )
        model.train()
        report_every = max(1, recipe.steps // PROGRESS_REPORTS)
        first_loss = recent = float("nan")
        for step in range(recipe.steps):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(recipe, step)
            batch = next(batches)
            # use_cache=False: no KV cache in training, which is also what lets transformers build
            # the block-diagonal mask from the position ids (it only does so without a cache).
            loss = model(
                input_ids=batch.input_ids,
                labels=batch.labels,
                position_ids=batch.position_ids,
                use_cache=False,
            ).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # Clipping keeps a rare large gradient from undoing the run at this high learning rate.
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            recent = loss.item()
            if step == 0:
                first_loss = recent
            if (step + 1) % report_every == 0 or step + 1 == recipe.steps:
                elapsed = time.perf_counter() - started
                progress(f"training step {step + 1}/{recipe.steps}, loss {recent:.2f} ({elapsed:.0f} s)")
        model.eval()
        # Batched like training, since one forward per conversation is ~30x slower on a busy CPU.
        rows = _pack(sequences, block_size=recipe.block_size)
        final_loss = _corpus_loss(
            model,
            [
                _collate(rows[i : i + recipe.batch_size], block_size=recipe.block_size, pad_id=pad_id)
                for i in range(0, len(rows), recipe.batch_size)
            ],
        )

    return TrainingResult(
        model=model,
        parameters=parameters,
        first_loss=first_loss,
        final_loss=final_loss,
        seconds=time.perf_counter() - started,
    )
