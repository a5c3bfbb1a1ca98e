"""Loading a causal LM's weights from a model directory, including Stratum's quantized variants.

A quantized variant directory is the parent's config and tokenizer plus ``stratum_quant.json``
(the method) and ``quantized.pt`` (the quantized state dict): dynamically quantized modules cannot
be written as safetensors, so they are rebuilt from the config, quantized the same way, and loaded.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

QUANT_MANIFEST = "stratum_quant.json"
QUANT_WEIGHTS = "quantized.pt"
DYNAMIC_INT8 = "dynamic_int8"


def load_causal_lm(path: Path, *, dtype: str = "float32") -> Any:
    """The model in eval mode; a quantized variant comes back quantized (its dtype is fp32)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    manifest = path / QUANT_MANIFEST
    if not manifest.is_file():
        return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval()
    method = json.loads(manifest.read_text(encoding="utf-8")).get("method")
    if method != DYNAMIC_INT8:
        raise ValueError(f"unknown quantization method {method!r} in {manifest}")
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=torch.float32).eval()
    model = quantize_dynamic_int8(model)
    state = torch.load(path / QUANT_WEIGHTS, map_location="cpu", weights_only=False)
    model.load_state_dict(state)
    return model


def quantize_dynamic_int8(model: Any) -> Any:
    """int8 weights, activations quantized per batch at run time, on every ``nn.Linear``.

    ``torch.ao.quantization`` is deprecated in favour of torchao, but torchao's int8 paths were
    measured slower than fp32 here on CPU in eager mode and its import breaks under
    warnings-as-errors; the dynamic path still works in torch 2.13 and uses fbgemm's int8 kernels.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def save_quantized(model: Any, source: Path, target: Path) -> None:
    """Write a quantized variant: the parent's config/tokenizer files, the manifest, the weights."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if (
            item.is_file()
            and not item.name.endswith((".safetensors", ".bin", ".pt"))
            and item.name != "model.safetensors.index.json"
        ):
            (target / item.name).write_bytes(item.read_bytes())
    torch.save(model.state_dict(), target / QUANT_WEIGHTS)
    (target / QUANT_MANIFEST).write_text(json.dumps({"method": DYNAMIC_INT8}), encoding="utf-8")


def weights_bytes(path: Path) -> int:
    """Bytes of weight files in a model directory (what a quantized or pruned variant saves)."""
    suffixes = (".safetensors", ".bin", ".pt", ".onnx", ".onnx_data", ".data")
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.name.endswith(suffixes))


def nll_per_text(
    model: Any, tokenizer: Any, texts: list[str], *, max_length: int = 1024
) -> list[tuple[float, int]]:
    """(mean negative log-likelihood, predicted tokens) of each text, truncated to the context."""
    limit = min(max_length, int(getattr(model.config, "max_position_embeddings", max_length) or max_length))
    scored = []
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=limit)["input_ids"]
            if ids.shape[1] < 2:
                raise ValueError(f"text too short to score: {text[:40]!r}")
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            scored.append((float(loss), int(ids.shape[1]) - 1))
    return scored
