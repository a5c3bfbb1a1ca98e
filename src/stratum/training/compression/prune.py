"""Pruning to a target sparsity.

- ``magnitude``: the smallest-magnitude weights of all decoder Linear layers, globally, set to zero.
  The model keeps its shape (dense kernels gain no speed); the zeros compress and prepare for
  sparse kernels.
- ``structured``: whole MLP neurons removed per layer (importance = L2 norm of the neuron's gate, up
  and down weights), so ``intermediate_size`` shrinks and the model is really smaller and faster.
  Llama-style MLPs (gate_proj/up_proj/down_proj) only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from stratum.engine.weights import load_causal_lm

PruneMethod = Literal["magnitude", "structured"]


def prune(parent: Path, target: Path, *, sparsity: float, method: PruneMethod = "magnitude") -> Any:
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"sparsity must be between 0 and 1, got {sparsity}")
    model = load_causal_lm(parent)
    if method == "magnitude":
        _magnitude(model, sparsity)
    elif method == "structured":
        _structured(model, sparsity)
    else:
        raise ValueError(f"unknown pruning method {method!r}")
    model.save_pretrained(target, safe_serialization=True)
    _copy_tokenizer(parent, target)
    return model


def _decoder_linears(model: Any) -> list[torch.nn.Linear]:
    head = model.get_output_embeddings()
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]


def _magnitude(model: Any, sparsity: float) -> None:
    import torch.nn.utils.prune as torch_prune

    layers = _decoder_linears(model)
    torch_prune.global_unstructured(
        [(layer, "weight") for layer in layers], pruning_method=torch_prune.L1Unstructured, amount=sparsity
    )
    for layer in layers:
        torch_prune.remove(layer, "weight")  # make the zeros permanent, drop the mask


def _structured(model: Any, sparsity: float) -> None:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not layers or not all(hasattr(layer, "mlp") and hasattr(layer.mlp, "gate_proj") for layer in layers):
        raise ValueError("structured pruning supports Llama-style MLPs (gate_proj, up_proj, down_proj) only")
    width = layers[0].mlp.gate_proj.out_features
    keep = max(1, round(width * (1.0 - sparsity)))
    with torch.no_grad():
        for layer in layers:
            mlp = layer.mlp
            importance = (
                mlp.gate_proj.weight.norm(dim=1)
                * mlp.up_proj.weight.norm(dim=1)
                * mlp.down_proj.weight.norm(dim=0)
            )
            kept = importance.topk(keep).indices.sort().values
            mlp.gate_proj = _rows(mlp.gate_proj, kept)
            mlp.up_proj = _rows(mlp.up_proj, kept)
            mlp.down_proj = _columns(mlp.down_proj, kept)
    model.config.intermediate_size = keep


def _rows(linear: torch.nn.Linear, kept: torch.Tensor) -> torch.nn.Linear:
    new = torch.nn.Linear(
        linear.in_features, len(kept), bias=linear.bias is not None, dtype=linear.weight.dtype
    )
    new.weight.copy_(linear.weight[kept])
    if linear.bias is not None:
        new.bias.copy_(linear.bias[kept])
    return new


def _columns(linear: torch.nn.Linear, kept: torch.Tensor) -> torch.nn.Linear:
    new = torch.nn.Linear(
        len(kept), linear.out_features, bias=linear.bias is not None, dtype=linear.weight.dtype
    )
    new.weight.copy_(linear.weight[:, kept])
    if linear.bias is not None:
        new.bias.copy_(linear.bias)
    return new


def sparsity_of(model: Any) -> float:
    layers = _decoder_linears(model)
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    return zeros / sum(layer.weight.numel() for layer in layers)


def _copy_tokenizer(parent: Path, target: Path) -> None:
    for item in parent.iterdir():
        if item.is_file() and (
            "token" in item.name or item.name.endswith(".jinja") or item.name == "chat_template.json"
        ):
            (target / item.name).write_bytes(item.read_bytes())
