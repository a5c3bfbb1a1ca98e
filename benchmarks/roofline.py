"""The fastest an e5-small-shaped encoder *could* embed a set of chunks on this CPU.

Embedding is dense matrix products. This measures what this machine's cores actually deliver on
the encoder's own matrix shapes (fp32 ``nn.Linear``, and torch's dynamic int8 ``nn.Linear`` —
fbgemm, the only int8 path that ran faster than fp32 here), counts the floating-point work a
chunk needs (per layer: ``2·L·(4h² + 2hf)`` for the projections and the FFN, ``4·L²·h`` for the
attention scores and context), and divides: chunks/s at 100 % of the measured matrix rate, no
tokenizer, softmax, LayerNorm, GELU, BM25 or writes. Real throughput stays below it; a target above
a model's ceiling cannot be reached by any kernel or runtime for that model on this machine.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

HIDDEN = 384  # multilingual-e5-small
FFN = 1536


@dataclass(frozen=True)
class Rates:
    fp32: float  # GFLOP/s through fp32 nn.Linear at the encoder's shapes
    int8: float  # GOP/s through dynamic-int8 nn.Linear (activation quantisation included)


@dataclass(frozen=True)
class Work:
    linear: float  # GFLOP in projections and FFN
    attention: float  # GFLOP in attention scores and context


def _best_seconds(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure(rows: int = 4096, rounds: int = 5) -> Rates:
    """Matrix rate at the current ``torch.get_num_threads()``, best of ``rounds`` (least disturbed)."""
    from torch.ao.quantization import quantize_dynamic

    torch.manual_seed(0)
    layers = [torch.nn.Linear(HIDDEN, FFN), torch.nn.Linear(FFN, HIDDEN), torch.nn.Linear(HIDDEN, HIDDEN)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        quantized = [quantize_dynamic(torch.nn.Sequential(layer), {torch.nn.Linear}) for layer in layers]
    flops = seconds_fp32 = seconds_int8 = 0.0
    with torch.inference_mode():
        for layer, q in zip(layers, quantized, strict=True):
            x = torch.randn(rows, layer.in_features)
            flops += 2.0 * rows * layer.in_features * layer.out_features
            seconds_fp32 += _best_seconds(lambda layer=layer, x=x: layer(x), rounds)
            seconds_int8 += _best_seconds(lambda q=q, x=x: q(x), rounds)
    return Rates(fp32=flops / seconds_fp32 / 1e9, int8=flops / seconds_int8 / 1e9)


def work(token_counts: Sequence[int], layers: int) -> Work:
    """Floating-point work of embedding sequences of these lengths through ``layers`` layers."""
    per_layer_linear = sum(2.0 * n * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN) for n in token_counts)
    per_layer_attention = sum(4.0 * n * n * HIDDEN for n in token_counts)
    return Work(linear=layers * per_layer_linear / 1e9, attention=layers * per_layer_attention / 1e9)


def ceiling(chunks: int, w: Work, rates: Rates, *, int8: bool = False) -> float:
    """Chunks/s if every matrix product ran at the measured rate and nothing else took time
    (int8: the projections at the int8 rate; attention has no int8 kernel here, fp32)."""
    seconds = w.linear / (rates.int8 if int8 else rates.fp32) + w.attention / rates.fp32
    return chunks / seconds
