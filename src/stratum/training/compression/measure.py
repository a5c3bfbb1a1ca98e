"""One harness for parent and child: weights size, greedy decoding speed, held-out perplexity."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from stratum.engine.weights import nll_per_text, weights_bytes

# 32 new tokens after a short prompt: long enough to be decode-dominated, short enough for CI.
NEW_TOKENS = 32


@dataclass(frozen=True)
class Measures:
    size_bytes: int
    tokens_per_s_batch1: float
    tokens_per_s_batch8: float
    perplexity: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def measure(model: Any, tokenizer: Any, directory: Path, texts: list[str], *, prompt: str) -> Measures:
    scored = nll_per_text(model, tokenizer, texts)
    tokens = sum(n for _, n in scored)
    return Measures(
        size_bytes=weights_bytes(directory),
        tokens_per_s_batch1=_speed(model, tokenizer, [prompt]),
        tokens_per_s_batch8=_speed(model, tokenizer, [prompt] * 8),
        perplexity=math.exp(sum(nll * n for nll, n in scored) / tokens),
    )


def _speed(model: Any, tokenizer: Any, prompts: list[str]) -> float:
    batch = tokenizer(prompts, return_tensors="pt")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kwargs = {
        "max_new_tokens": NEW_TOKENS,
        "min_new_tokens": NEW_TOKENS,
        "do_sample": False,
        "pad_token_id": pad,
    }
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=2, do_sample=False, pad_token_id=pad)  # warm-up
        started = time.perf_counter()
        model.generate(**batch, **kwargs)
        seconds = time.perf_counter() - started
    return len(prompts) * NEW_TOKENS / seconds


def deltas(before: Measures, after: Measures) -> dict[str, float]:
    """Ratios after/before (size, speed) and the perplexity change in percent."""
    return {
        "size_ratio": after.size_bytes / before.size_bytes,
        "speed_ratio_batch1": after.tokens_per_s_batch1 / before.tokens_per_s_batch1,
        "speed_ratio_batch8": after.tokens_per_s_batch8 / before.tokens_per_s_batch8,
        "perplexity_change_pct": 100.0 * (after.perplexity - before.perplexity) / before.perplexity,
    }
