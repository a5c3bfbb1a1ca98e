"""Multi-LoRA: one base model, many PEFT LoRA adapters, mixed freely in one fused round.

The punica/S-LoRA idea on CPU: every target ``nn.Linear`` of the base model is wrapped once in a
``LoraLinear``. Its forward runs the base matmul for ALL rows of the packed round (where the time
goes), then, for each adapter present in the round, adds ``B(A(x)) * scaling`` to that adapter's
rows only. Rows of base-only sequences get nothing added. The engine groups a round's sequences
by adapter (see ``LocalEngine._plan``), so each adapter costs two thin matmuls per layer whatever
the number of its sequences.

The arithmetic is PEFT's own (``peft.tuners.lora.layer.Linear.forward``: ``result +
lora_B(lora_A(dropout(x))) * scaling``, dropout off at inference), so a sequence's greedy output
equals what plain ``peft`` produces for that adapter alone.

Adapters are installed and removed while the engine runs; the engine serialises that with its
rounds. Only what plain LoRA needs is supported: features that change the base layer's output in
other ways (DoRA, LoRA bias, ``modules_to_save``, embedding targets) are refused with a clear error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stratum.engine.adapter_config import WEIGHTS_FILES, read_adapter_config
from stratum.errors import InvalidRequest

# PEFT saves keys as "base_model.model.<module path>.lora_A.weight" (the adapter name stripped).
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class LoraDelta:
    """One adapter's low-rank update of one linear layer."""

    a: torch.Tensor  # [rank, in_features]
    b: torch.Tensor  # [out_features, rank]
    scaling: float


@dataclass(frozen=True)
class AdapterWeights:
    """A PEFT LoRA adapter read from disk: per-module deltas keyed by the base model's module path."""

    deltas: dict[str, LoraDelta]
    rank: int
    alpha: float

    @property
    def nbytes(self) -> int:
        return sum(d.a.nbytes + d.b.nbytes for d in self.deltas.values())


def load_adapter(path: Path, *, dtype: torch.dtype) -> AdapterWeights:
    """Read an adapter's config and weights (no base model needed)."""
    config = read_adapter_config(path)
    weights = path / WEIGHTS_FILES[0]
    if weights.is_file():
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(path / WEIGHTS_FILES[1], map_location="cpu", weights_only=True)
    rank = int(config.get("r", 8))
    alpha = float(config.get("lora_alpha", rank))
    rank_pattern: dict[str, int] = config.get("rank_pattern") or {}
    alpha_pattern: dict[str, float] = config.get("alpha_pattern") or {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _KEY.match(key)
        if match is None:
            raise InvalidRequest(f"adapter '{path}' holds an unexpected tensor '{key}'.", param="path")
        parts.setdefault(match["module"], {})[match["part"]] = tensor
    deltas: dict[str, LoraDelta] = {}
    for module, pair in parts.items():
        if set(pair) != {"A", "B"}:
            raise InvalidRequest(f"adapter '{path}' has an incomplete LoRA pair for {module}.", param="path")
        r = _pattern_value(rank_pattern, module, rank)
        a = float(_pattern_value(alpha_pattern, module, alpha))
        # PEFT's scaling rule (LoraLayer.update_layer): alpha / r, or alpha / sqrt(r) with rsLoRA.
        scaling = a / math.sqrt(r) if config.get("use_rslora") else a / r
        deltas[module] = LoraDelta(
            a=pair["A"].to(dtype).contiguous(), b=pair["B"].to(dtype).contiguous(), scaling=scaling
        )
    if not deltas:
        raise InvalidRequest(f"adapter '{path}' holds no LoRA weights.", param="path")
    return AdapterWeights(deltas=deltas, rank=rank, alpha=alpha)


def _pattern_value(pattern: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank/alpha patterns: the first key that is a suffix of the module path wins."""
    for key, value in pattern.items():
        if module == key or module.endswith(f".{key}") or re.fullmatch(f"(.*\\.)?{key}", module):
            return value
    return default


class LoraLinear(nn.Module):
    """A base ``nn.Linear`` plus the deltas of every installed adapter that targets it."""

    def __init__(self, base: nn.Linear, router: LoraRouter) -> None:
        super().__init__()
        self.base = base
        self.router = router
        self.deltas: dict[str, LoraDelta] = {}
        self._stack: _Stack | None = None  # all deltas side by side, built on first mixed round

    def set_delta(self, name: str, delta: LoraDelta | None) -> None:
        if delta is None:
            self.deltas.pop(name, None)
        else:
            self.deltas[name] = delta
        self._stack = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x)
        groups = [(a, s, e) for a, s, e in self.router.groups if a in self.deltas]
        if len(groups) <= STACK_FROM_GROUPS:
            for adapter, start, end in groups:
                delta = self.deltas[adapter]
                rows = x[..., start:end, :]
                out[..., start:end, :] += F.linear(F.linear(rows, delta.a), delta.b) * delta.scaling
            return out
        # Many adapters in one round: two matmuls over every row against all adapters' A and B
        # side by side (ranks are small, so the wasted columns cost little), with a mask that keeps
        # each row's own adapter's columns, scaled, and zeroes the rest. A row of adapter k thus
        # gets B_k (s_k * A_k x), the same delta as the per-group path, in 3 ops instead of 4 per group.
        stack = self._stack or self._build_stack()
        mask = self.router.mask(stack, x.shape[-2], x.dtype)
        out += F.linear(F.linear(x, stack.a) * mask, stack.b)
        return out

    def _build_stack(self) -> _Stack:
        names = sorted(self.deltas)
        columns: dict[str, tuple[int, int, float]] = {}
        start = 0
        for name in names:
            delta = self.deltas[name]
            columns[name] = (start, start + delta.a.shape[0], delta.scaling)
            start += delta.a.shape[0]
        a = torch.cat([self.deltas[n].a for n in names], dim=0)
        b = torch.cat([self.deltas[n].b for n in names], dim=1)
        self._stack = _Stack(a=a, b=b, columns=columns, signature=tuple(sorted(columns.items())))
        return self._stack


# Up to this many adapter groups in a round, each group gets its own two thin matmuls (exactly
# PEFT's arithmetic); beyond it the stacked path is cheaper. Measured on a 20M Llama, 18 decode rows,
# 8 rank-16 adapters on all 7 projections + base rows, 1 thread: ~125 ms a round stacked, ~150 ms
# per group, ~100 ms with no adapter at all.
STACK_FROM_GROUPS = 2


@dataclass(frozen=True)
class _Stack:
    a: torch.Tensor  # [sum of ranks, in_features]
    b: torch.Tensor  # [out_features, sum of ranks]
    columns: dict[str, tuple[int, int, float]]  # adapter -> (first column, end column, scaling)
    signature: tuple[tuple[str, tuple[int, int, float]], ...]


class LoraRouter:
    """The adapters installed on one model, and which rows of the current round use which.

    ``groups`` is set by the fused forward for the duration of one round: ``(adapter, start, end)``
    spans of the packed token row. Only the engine's scheduler thread reads or writes it.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.groups: Sequence[tuple[str, int, int]] = ()
        self.adapters: dict[str, AdapterWeights] = {}
        self._layers: dict[str, LoraLinear] = {}
        # Masks of the current round, shared by every layer with the same adapters and ranks.
        self._masks: dict[tuple[Any, ...], torch.Tensor] = {}

    @contextmanager
    def route(self, groups: Sequence[tuple[str, int, int]]) -> Iterator[None]:
        self.groups = groups
        self._masks = {}
        try:
            yield
        finally:
            self.groups = ()
            self._masks = {}

    def mask(self, stack: _Stack, rows: int, dtype: torch.dtype) -> torch.Tensor:
        """``[rows, sum of ranks]``: a row's own adapter's columns hold its scaling, the rest 0."""
        key = (stack.signature, rows, dtype)
        mask = self._masks.get(key)
        if mask is None:
            mask = torch.zeros(rows, stack.a.shape[0], dtype=dtype)
            for adapter, start, end in self.groups:
                if (span := stack.columns.get(adapter)) is not None:
                    mask[start:end, span[0] : span[1]] = span[2]
            self._masks[key] = mask
        return mask

    def install(self, name: str, adapter: AdapterWeights) -> None:
        """Attach ``adapter`` under ``name``; checks every target exists with matching shapes first."""
        modules = dict(self.model.named_modules())
        for module_path, delta in adapter.deltas.items():
            target = modules.get(module_path)
            if isinstance(target, LoraLinear):
                target = target.base
            if not isinstance(target, nn.Linear):
                raise InvalidRequest(
                    f"the adapter targets '{module_path}', which is not a linear layer of the base model "
                    "(was it trained on another base?).",
                    param="model",
                )
            if delta.a.shape[1] != target.in_features or delta.b.shape[0] != target.out_features:
                raise InvalidRequest(
                    f"the adapter's shapes for '{module_path}' do not fit the base model "
                    f"({tuple(delta.b.shape[:1]) + tuple(delta.a.shape[1:])} vs "
                    f"{(target.out_features, target.in_features)}): it was trained on another base.",
                    param="model",
                )
        for module_path, delta in adapter.deltas.items():
            self._wrapped(module_path).set_delta(name, delta)
        self.adapters[name] = adapter

    def remove(self, name: str) -> None:
        self.adapters.pop(name, None)
        for layer in self._layers.values():
            layer.set_delta(name, None)

    def _wrapped(self, module_path: str) -> LoraLinear:
        layer = self._layers.get(module_path)
        if layer is None:
            parent_path, _, attr = module_path.rpartition(".")
            parent = self.model.get_submodule(parent_path) if parent_path else self.model
            layer = LoraLinear(getattr(parent, attr), self)
            setattr(parent, attr, layer)
            self._layers[module_path] = layer
        return layer


def router_of(model: nn.Module) -> LoraRouter:
    """The model's router, created on first use (a model without adapters never gets one)."""
    router: LoraRouter | None = getattr(model, "_stratum_lora", None)
    if router is None:
        router = LoraRouter(model)
        setattr(model, "_stratum_lora", router)  # noqa: B010  # a plain attribute, not a submodule
    return router
