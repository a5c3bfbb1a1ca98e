"""KV memory for the embedded engine: one growable store per sequence, and a token budget.

Each sequence owns its keys and values for every layer in a single tensor shaped
``[layers, 2 (key/value), kv_heads, capacity, head_dim]``. Owning them per sequence (rather than one
``[batch, ...]`` tensor for the whole batch) means a sequence that joins or leaves the batch never
forces the others' memory to be copied, and dropping the sequence frees its memory at once.
"""

from __future__ import annotations

from typing import Any

import torch

# A new store starts with room for its prompt plus this many generated tokens, then doubles: most
# answers are short, and doubling keeps the copying amortised O(1) per token for long ones.
INITIAL_HEADROOM = 64


class SequenceKV:
    """Keys and values of one sequence, written in place by the fused forward, layer by layer.

    ``length`` counts the tokens whose keys and values are stored for every layer. A forward writes
    the round's new tokens just past ``length`` in each layer and only ``commit`` makes them count,
    so a forward that fails half-way leaves the store as it was.
    """

    def __init__(self, shape: KVShape, *, prompt_tokens: int, max_tokens: int) -> None:
        self.shape = shape
        self.max_tokens = max_tokens
        self.length = 0
        self._data = shape.empty(min(max_tokens, prompt_tokens + INITIAL_HEADROOM))

    @property
    def capacity(self) -> int:
        return int(self._data.shape[3])

    def reserve(self, new_tokens: int) -> None:
        """Make room for ``new_tokens`` more tokens (called before the forward that writes them)."""
        needed = self.length + new_tokens
        if needed > self.max_tokens:
            raise ValueError(f"sequence needs {needed} KV tokens, more than its limit {self.max_tokens}")
        if needed <= self.capacity:
            return
        grown = self.shape.empty(min(self.max_tokens, max(needed, 2 * self.capacity)))
        grown[:, :, :, : self.length] = self._data[:, :, :, : self.length]
        self._data = grown

    def write(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this round's ``[kv_heads, n, head_dim]`` keys/values; return all of them so far."""
        end = self.length + keys.shape[1]
        self._data[layer, 0, :, self.length : end] = keys
        self._data[layer, 1, :, self.length : end] = values
        return self._data[layer, 0, :, :end], self._data[layer, 1, :, :end]

    def commit(self, new_tokens: int) -> None:
        self.length += new_tokens

    def load_prefix(self, data: torch.Tensor) -> None:
        """Start an empty store with reused ``[layers, 2, kv_heads, n, head_dim]`` keys/values."""
        if self.length:
            raise ValueError("a prefix is loaded into an empty store only")
        tokens = int(data.shape[3])
        self.reserve(tokens)
        self._data[:, :, :, :tokens] = data
        self.length = tokens

    def snapshot(self, start: int, end: int) -> torch.Tensor:
        """A copy of the stored keys/values of tokens ``start:end`` (for the prefix cache)."""
        if end > self.length:
            raise ValueError(f"tokens {start}:{end} are not all stored (length {self.length})")
        return self._data[:, :, :, start:end].clone()


class KVShape:
    """The per-token KV geometry of a model, read from its config."""

    def __init__(self, config: Any, dtype: torch.dtype) -> None:
        self.layers = int(config.num_hidden_layers)
        heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        self.dtype = dtype

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8

    def empty(self, capacity: int) -> torch.Tensor:
        return torch.empty(self.layers, 2, self.kv_heads, capacity, self.head_dim, dtype=self.dtype)


class KVBudget:
    """Admission control for KV memory: a sequence reserves its worst case before it may run.

    Reserving prompt + max_new_tokens up front means a running sequence never runs out of memory
    mid-stream and nothing has to be preempted; the price is that short answers to requests with a
    large ``max_tokens`` hold memory they never use. ``limit=None`` means no budget.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.reserved = 0

    def fits(self, tokens: int) -> bool:
        return self.limit is None or self.reserved + tokens <= self.limit

    def take(self, tokens: int) -> None:
        self.reserved += tokens

    def give_back(self, tokens: int) -> None:
        self.reserved -= tokens
