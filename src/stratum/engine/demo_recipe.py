"""How the demo model is built: every number that shapes the weights, explained.

The budget is the point: the first ``make run`` on a 2-core laptop must be serving in under three
minutes, so tokenizer + training + save get ~30 s of CPU. The numbers below were measured against
that budget (see ``DEFAULT_RECIPE``); change one and the cached model is rebuilt automatically,
because the recipe is part of the cache fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

# Bump when the build *code* changes what comes out for the same recipe (template, sampling of
# batches, training loop, saved files): a recipe-only change is caught by the fingerprint already.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class DemoRecipe:
    # Seeds torch for initialisation and batch sampling: same recipe, same weights, bit for bit.
    seed: int = 1337
    # The corpus is ~35 kB; BPE stops finding merges seen twice at ~2,200 tokens. 2,048 keeps the
    # useful merges (a conversation is ~53 tokens on average, 118 at most) with a 256k-float embedding.
    vocab_size: int = 2048
    # Width 128 / 2 layers / 4 heads of 32 dims: ~0.7M parameters, ~90 ms per training step on two
    # cores. Width 192 x 3 layers learns faster per step but is 2.3x slower per step, a net loss here.
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    # Llama's SwiGLU MLP uses ~8/3 x hidden; 384 rounds that up to a multiple of 128.
    intermediate_size: int = 384
    # What the server may feed the model (prompt + answer). Positions are RoPE, so nothing is
    # learned per position and a context longer than the training windows costs nothing to declare.
    context_length: int = 512
    # Training windows start at a conversation start and cover the longest conversation (118 tokens).
    block_size: int = 128
    # 16 windows x 128 tokens = 2,048 tokens per step; 16 of the 201 conversations per step.
    batch_size: int = 16
    # ~20 passes over the conversations: enough for the toy to repeat its corpus answers, within
    # ~25 s on two cores.
    steps: int = 260
    # Tiny models tolerate (and need, with this few steps) a learning rate ~10x a large model's.
    learning_rate: float = 3e-3
    # A short warm-up keeps the first Adam steps from blowing up the freshly initialised weights.
    warmup_steps: int = 20
    # The cosine schedule decays to 10% of the peak, not zero: the last steps still learn something.
    min_lr_ratio: float = 0.1

    def provenance(self, corpus_digest: str) -> dict[str, Any]:
        """Everything that determines the weights: build code version, recipe, corpus, and its hash."""
        payload = {"recipe_version": RECIPE_VERSION, "recipe": asdict(self), "corpus_sha256": corpus_digest}
        fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return {**payload, "fingerprint": fingerprint}


DEFAULT_RECIPE = DemoRecipe()
