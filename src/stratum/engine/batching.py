"""The fused step: one forward advances every running sequence, whatever its length.

The round's new tokens (one per decoding sequence, a prompt chunk per prefilling one) are packed
into a single row ``[1, total_tokens]``, each with its own position id. This is the "ragged" (or
varlen) batching of vLLM and of transformers' own continuous batching:

- every linear layer (QKV, MLP, lm_head: where CPU time goes) multiplies all the tokens at once;
- attention, the only place where sequences must not mix, runs per sequence against that
  sequence's own ``SequenceKV``, with no padding and no mask between sequences.

Why not the classic padded batch (``[batch, max_len]`` KV with left padding + attention mask):
every join or leave would re-pack the whole batch's KV, prompts of mixed lengths waste compute on
padding, and a padded softmax row reduces in a different order than the same row unpadded, so
batched greedy output could drift from unbatched. Here the attention of a sequence is computed
exactly as if it were alone; the only batch-dependent arithmetic left is inside the matrix
multiplies (see ``tests/engine/test_batching.py`` for what that means for equality).

The model keeps its own Llama/Qwen2/Mistral code: we only swap its attention function (through
transformers' ``AttentionInterface``) and call it without a transformers cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from stratum.engine.kv import SequenceKV

# The name our attention function is registered under in transformers' global registry. Models
# served by the engine are switched to it; the registry has no mask function under this name, so
# transformers builds no [tokens x tokens] mask we would not use.
ATTENTION = "stratum_ragged"


@dataclass(frozen=True)
class Chunk:
    """What one sequence feeds to a round: new tokens to append to its KV."""

    kv: SequenceKV
    tokens: Sequence[int]
    # Decode steps and the last chunk of a prompt produce a next token; earlier chunks do not.
    wants_logits: bool
    # The LoRA adapter the sequence runs with (None: the base model alone).
    adapter: str | None = None


@dataclass(frozen=True)
class _Segment:
    kv: SequenceKV
    start: int  # the sequence's rows in the packed round
    end: int


def prepare(model: Any) -> None:
    """Switch ``model`` to ragged attention (idempotent; the registration is global in transformers).

    Raises ``ValueError`` for a model whose code does not dispatch through ``AttentionInterface``:
    it would silently ignore our KV caches, so it must not be served this way.
    """
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, ragged_attention)
    model.set_attn_implementation(ATTENTION)
    if model.config._attn_implementation != ATTENTION:
        raise ValueError(f"{type(model).__name__} cannot use a custom attention function")


def forward(model: Any, chunks: Sequence[Chunk]) -> torch.Tensor:
    """Run one round; return logits ``[n, vocab]`` for the chunks that want them, in order."""
    ids: list[int] = []
    positions: list[int] = []
    segments: list[_Segment] = []
    keep: list[int] = []
    groups: list[tuple[str, int, int]] = []  # contiguous rows per adapter, for LoraLinear
    for chunk in chunks:
        start = len(ids)
        chunk.kv.reserve(len(chunk.tokens))
        ids.extend(chunk.tokens)
        # A sequence's positions continue from its own past, whatever the others hold.
        positions.extend(range(chunk.kv.length, chunk.kv.length + len(chunk.tokens)))
        segments.append(_Segment(chunk.kv, start, len(ids)))
        if chunk.adapter is not None:
            if groups and groups[-1][0] == chunk.adapter and groups[-1][2] == start:
                groups[-1] = (chunk.adapter, groups[-1][1], len(ids))
            else:
                groups.append((chunk.adapter, start, len(ids)))
        if chunk.wants_logits:
            keep.append(len(ids) - 1)
    router = getattr(model, "_stratum_lora", None)
    with router.route(groups) if router is not None else contextlib.nullcontext():
        out = model(
            input_ids=torch.tensor([ids], dtype=torch.long),
            position_ids=torch.tensor([positions], dtype=torch.long),
            use_cache=False,
            # Only rows that predict a next token go through lm_head (vocab-wide: not free).
            logits_to_keep=torch.tensor(keep, dtype=torch.long),
            ragged_segments=segments,
        )
    # Commit only after the whole forward succeeded (see SequenceKV).
    for chunk in chunks:
        chunk.kv.commit(len(chunk.tokens))
    logits: torch.Tensor = out.logits[0]
    return logits.float()


def ragged_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    sliding_window: int | None = None,
    ragged_segments: Sequence[_Segment] = (),
    **_: Any,
) -> tuple[torch.Tensor, None]:
    """Attention for a packed round (transformers' attention-function signature).

    ``query`` is ``[1, heads, tokens, head_dim]``; ``key``/``value`` are ``[1, kv_heads, tokens,
    head_dim]`` for the round's new tokens only, already rotated. Each sequence stores its slice in
    its KV and attends over everything it has stored. Returns ``[1, tokens, heads, head_dim]``.
    """
    layer = int(module.layer_idx)  # type: ignore[arg-type]
    out = query.new_empty(1, query.shape[2], query.shape[1], query.shape[3])
    for seg in ragged_segments:
        keys, values = seg.kv.write(layer, key[0, :, seg.start : seg.end], value[0, :, seg.start : seg.end])
        q = query[:, :, seg.start : seg.end]
        mask = _mask(q.shape[2], keys.shape[1], sliding_window)
        attended = F.scaled_dot_product_attention(
            q,
            keys.unsqueeze(0),
            values.unsqueeze(0),
            attn_mask=mask,
            # With no past, a causal chunk is the plain lower triangle: let SDPA build it.
            is_causal=mask is None and q.shape[2] > 1,
            scale=scaling,
            enable_gqa=keys.shape[0] != q.shape[1],
        )
        out[0, seg.start : seg.end] = attended[0].transpose(0, 1)
    return out, None


def _mask(queries: int, keys: int, window: int | None) -> torch.Tensor | None:
    """The boolean mask for ``queries`` new tokens that are the last of ``keys`` (None: none needed)."""
    past = keys - queries
    if window is not None and keys <= window:
        window = None  # the window covers everything there is
    if window is None and (queries == 1 or past == 0):
        return None  # one query sees everything; or no past, where is_causal does it
    q_pos = torch.arange(past, keys).unsqueeze(1)
    k_pos = torch.arange(keys).unsqueeze(0)
    allowed = k_pos <= q_pos
    if window is not None:
        # Same rule as transformers' sliding-window mask: a query sees its last `window` positions.
        allowed &= k_pos > q_pos - window
    return allowed
