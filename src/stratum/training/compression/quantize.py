"""INT8 dynamic quantization (weights int8, activations quantized per batch) of every Linear layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stratum.engine.weights import load_causal_lm, quantize_dynamic_int8, save_quantized


def quantize(parent: Path, target: Path) -> Any:
    model = quantize_dynamic_int8(load_causal_lm(parent))
    save_quantized(model, parent, target)
    return model
