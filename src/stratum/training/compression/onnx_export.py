"""ONNX export of a causal LM's forward pass (logits for ``input_ids``, no KV cache), checked with
ONNX Runtime against PyTorch on sample inputs before the export is accepted."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stratum.engine.weights import load_causal_lm
from stratum.training.compression.prune import _copy_tokenizer

ONNX_FILE = "model.onnx"


class _Logits(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def export_onnx(parent: Path, target: Path, *, samples: list[str], tolerance: float = 1e-3) -> float:
    """Write ``model.onnx`` (+ config and tokenizer) to ``target``; return the max |logit difference| seen.

    Raises ``ValueError`` when ONNX Runtime disagrees with PyTorch by more than ``tolerance``.
    """
    import onnxruntime
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(parent)
    wrapper = _Logits(load_causal_lm(parent)).eval()
    example = tokenizer(samples[0], return_tensors="pt")["input_ids"]
    limit = int(getattr(wrapper.model.config, "max_position_embeddings", 2048) or 2048)
    target.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress chatter and upstream deprecations
        torch.onnx.export(
            wrapper,
            (example,),
            str(target / ONNX_FILE),
            input_names=["input_ids"],
            output_names=["logits"],
            dynamic_shapes={
                "input_ids": {0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("seq", max=limit)}
            },
            dynamo=True,
            verbose=False,
        )
    _copy_tokenizer(parent, target)
    # The registry takes Hugging Face style directories: config.json says what the graph computes.
    wrapper.model.config.save_pretrained(target)
    session = onnxruntime.InferenceSession(str(target / ONNX_FILE), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.inference_mode():
        for text in samples:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            expected = wrapper(ids).numpy()
            (got,) = session.run(["logits"], {"input_ids": ids.numpy()})
            worst = max(worst, float(np.abs(got - expected).max()))
    if worst > tolerance:
        raise ValueError(f"ONNX Runtime differs from PyTorch by {worst:.2e} > {tolerance:.0e}")
    return worst
