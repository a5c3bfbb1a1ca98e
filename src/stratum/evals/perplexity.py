"""Perplexity of a local causal LM on a text set (the quality check of compression and fine-tuning).

Texts are scored one by one, truncated to the model's context: token-weighted mean negative
log-likelihood over all texts, exponentiated. Per-item scores are the per-text NLL so two versions can
be compared pairwise (lower is better; the gate negates it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stratum.errors import InvalidRequest


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    tokens: int
    nll_per_text: tuple[float, ...]


def perplexity(model_dir: Path, texts: Sequence[str], *, max_length: int = 1024) -> PerplexityResult:
    if not texts:
        raise InvalidRequest("perplexity needs at least one text")
    if not (model_dir / "config.json").is_file():
        raise InvalidRequest(f"{model_dir} is not a local model directory (no config.json)")
    from transformers import AutoTokenizer

    from stratum.engine.weights import load_causal_lm, nll_per_text

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    try:
        scored = nll_per_text(load_causal_lm(model_dir), tokenizer, list(texts), max_length=max_length)
    except ValueError as error:
        raise InvalidRequest(str(error)) from None
    tokens = sum(n for _, n in scored)
    return PerplexityResult(
        perplexity=math.exp(sum(nll * n for nll, n in scored) / tokens),
        tokens=tokens,
        nll_per_text=tuple(nll for nll, _ in scored),
    )
