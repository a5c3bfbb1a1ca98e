"""A deterministic training loop with checkpoints that resume to the identical result.

Why not ``transformers.Trainer``/TRL here: resuming one of those after ``kill -9`` replays the data
order through a sampler and RNG state that are easy to get subtly wrong, and the point of this loop
is the guarantee that a run killed at any moment and resumed from its last checkpoint ends with
bit-identical weights to a run that was never interrupted. It holds because everything a step
depends on is either a pure function of (seed, step) or saved in the checkpoint:

- data order: example ``g`` of the run is ``permutation(seed + epoch)[g % n]`` — no sampler state;
- learning rate: a function of the step (linear warm-up, then linear decay to zero);
- trainable weights, AdamW state and torch's RNG state (dropout) are in the checkpoint;
- the thread count is fixed by the job's resource request, so CPU reductions run in the same order.

With ``nproc: N`` (``training.distributed``) each rank takes a slice of every micro-batch, scales
its loss by the slice's share of the micro-batch (``weight_of``) and the gradients are summed over
the ranks before the optimizer step: the update of one process with the same global batch. Only
rank 0 writes checkpoints (with every rank's RNG state); every rank resumes from them.

A checkpoint is written to a temporary directory and renamed into place, so a kill during the save
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from stratum.jobs import JobContext
from stratum.training import distributed

_CHECKPOINT_PREFIX = "step-"
_LOSS_WINDOW = 10  # steps averaged into the reported train loss


@dataclass
class LoopSettings:
    total_steps: int
    batch_size: int
    grad_accum: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    max_grad_norm: float
    seed: int
    checkpoint_every: int
    keep_checkpoints: int


@dataclass
class LoopResult:
    steps: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    @property
    def train_loss(self) -> float | None:
        window = self.losses[-_LOSS_WINDOW:]
        return sum(window) / len(window) if window else None


def steps_for(
    *, examples: int, batch_size: int, grad_accum: int, max_steps: int | None, epochs: float | None
) -> int:
    if max_steps is not None:
        return max_steps
    per_step = batch_size * grad_accum
    return max(1, math.ceil((epochs or 1.0) * examples / per_step))


class DataOrder:
    """Which example each micro-batch holds: a pure function of (seed, step)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._epochs: dict[int, list[int]] = {}

    def indices(self, first: int, count: int) -> list[int]:
        out = []
        for g in range(first, first + count):
            epoch, position = divmod(g, self.size)
            if epoch not in self._epochs:
                generator = torch.Generator().manual_seed(self.seed + epoch)
                self._epochs = {epoch: torch.randperm(self.size, generator=generator).tolist()}
            out.append(self._epochs[epoch][position])
        return out


def learning_rate(settings: LoopSettings, step: int) -> float:
    if settings.warmup_steps and step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    remaining = settings.total_steps - step
    span = max(1, settings.total_steps - settings.warmup_steps)
    return settings.learning_rate * remaining / span


def checkpoints(directory: Path) -> list[tuple[int, Path]]:
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            if path.name.startswith(_CHECKPOINT_PREFIX) and (path / "state.json").is_file():
                found.append((int(path.name[len(_CHECKPOINT_PREFIX) :]), path))
    return sorted(found)


StepLoss = Callable[[Sequence[Any]], tuple[torch.Tensor, int]]
Weight = Callable[[Sequence[Any]], float]


def _all_reduce_grads(params: list[torch.nn.Parameter]) -> None:
    """Sum the gradients over the ranks, as one flat buffer."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
    distributed.all_reduce_sum(flat)
    offset = 0
    for p in params:
        assert p.grad is not None
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def train(
    context: JobContext,
    *,
    named_params: list[tuple[str, torch.nn.Parameter]],
    examples: Sequence[Any],
    loss_of: StepLoss,
    settings: LoopSettings,
    checkpoint_dir: Path,
    weight_of: Weight | None = None,
) -> LoopResult:
    """Run (or resume) the loop; ``loss_of(examples)`` returns (mean loss, tokens processed).

    ``weight_of(examples)`` is what the mean in ``loss_of`` is over (label tokens, pairs; default:
    examples): in a data-parallel run it weights each rank's slice of a micro-batch."""
    world, me = distributed.world_size(), distributed.rank()
    if world > 1 and settings.batch_size < world:
        raise ValueError(f"batch_size {settings.batch_size} is smaller than the {world} processes")
    weigh: Weight = weight_of or (lambda batch: float(len(batch)))
    params = [p for _, p in named_params]
    optimizer = torch.optim.AdamW(
        params, lr=settings.learning_rate, weight_decay=settings.weight_decay, foreach=False
    )
    order = DataOrder(len(examples), settings.seed)
    result = LoopResult(steps=settings.total_steps, resumed_from=0)
    saved = checkpoints(checkpoint_dir)
    if saved:
        step, path = saved[-1]
        _load(path, named_params, optimizer, result)
        result.resumed_from = step
        if distributed.is_main():
            context.log(f"resumed from checkpoint {path.name}")
    distributed.barrier()
    started = time.monotonic()
    tokens_this_attempt = 0
    micro = settings.batch_size
    for step in range(result.resumed_from, settings.total_steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, step)
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for accum in range(settings.grad_accum):
            first = (step * settings.grad_accum + accum) * micro
            batch = [examples[i] for i in order.indices(first, micro)]
            if world > 1:
                whole, batch = batch, batch[me::world]
                share = weigh(batch) / max(weigh(whole), 1e-12)
            loss, tokens = loss_of(batch)
            if world > 1:
                loss = loss * share
            (loss / settings.grad_accum).backward()
            step_loss += float(loss.detach()) / settings.grad_accum
            tokens_this_attempt += tokens
        if world > 1:
            _all_reduce_grads(params)
            step_loss = float(distributed.all_reduce_sum(torch.tensor([step_loss], dtype=torch.float64))[0])
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        result.losses.append(step_loss)
        done = step + 1
        elapsed = time.monotonic() - started
        rate = tokens_this_attempt / elapsed if elapsed > 0 else None
        context.progress(
            done, settings.total_steps, loss=round(step_loss, 6), tokens_per_s=rate and round(rate, 1)
        )
        if done % settings.checkpoint_every == 0 or done == settings.total_steps:
            rng = distributed.gather(torch.get_rng_state())
            if distributed.is_main():
                _save(checkpoint_dir, done, named_params, optimizer, result, settings.keep_checkpoints, rng)
                context.log(f"step {done}/{settings.total_steps} loss {step_loss:.4f} checkpoint saved")
    result.seconds = time.monotonic() - started
    result.tokens = int(distributed.all_reduce_sum(torch.tensor([tokens_this_attempt], dtype=torch.long))[0])
    return result


def _save(
    directory: Path,
    step: int,
    named_params: list[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    result: LoopResult,
    keep: int,
    rng: list[torch.Tensor],
) -> None:
    final = directory / f"{_CHECKPOINT_PREFIX}{step:08d}"
    tmp = directory / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({name: p.detach().contiguous() for name, p in named_params}, str(tmp / "weights.safetensors"))
    # One RNG state per rank (dropout differs per rank); "rng" is rank 0's, as a single process saves.
    state = {"optimizer": optimizer.state_dict(), "rng": rng[0], "rng_ranks": rng}
    torch.save(state, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "losses": result.losses}), encoding="utf-8")
    _fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for _, old in checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _load(
    path: Path,
    named_params: list[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    result: LoopResult,
) -> None:
    weights = load_file(str(path / "weights.safetensors"))
    with torch.no_grad():
        for name, param in named_params:
            param.copy_(weights[name])
    trainer = torch.load(path / "trainer.pt", weights_only=True)
    optimizer.load_state_dict(trainer["optimizer"])
    ranks = trainer.get("rng_ranks") or [trainer["rng"]]
    me = distributed.rank()
    torch.set_rng_state(ranks[me] if len(ranks) == distributed.world_size() else trainer["rng"])
    result.losses = json.loads((path / "state.json").read_text(encoding="utf-8"))["losses"]


def _fsync_dir(directory: Path) -> None:
    for item in directory.iterdir():
        with item.open("rb") as handle:
            os.fsync(handle.fileno())
