"""Perplexity of a local causal LM on a text set (the quality check of compression and fine-tuning).

Texts are scored one by one, truncated to the model's context: token-weighted mean negative
log-likelihood over all texts, exponentiated. Per-item scores are the per-text NLL so two versions can
be compared pairwise (lower is better; callers negate it for the gate).
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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    limit = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    total_nll, total_tokens, per_text = 0.0, 0, []
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=limit)["input_ids"]
            if ids.shape[1] < 2:
                raise InvalidRequest(f"text too short to score: {text[:40]!r}")
            loss = model(input_ids=ids, labels=ids).loss  # mean NLL over ids.shape[1] - 1 predictions
            predicted = ids.shape[1] - 1
            per_text.append(float(loss))
            total_nll += float(loss) * predicted
            total_tokens += predicted
    return PerplexityResult(
        perplexity=math.exp(total_nll / total_tokens), tokens=total_tokens, nll_per_text=tuple(per_text)
    )
