"""Knowledge distillation: a student learns the teacher's next-token distributions on texts.

The student is either a given model directory (e.g. a pruned child of the teacher, to recover what
pruning cost) or a shallower copy of the teacher (every k-th decoder layer kept, the usual way to
initialise a student so it starts close). Loss: KL(teacher ‖ student) on temperature-softened
distributions (× T², Hinton et al.) plus a share of plain next-token cross-entropy. Weights that are
exactly zero at the start stay zero (a magnitude-pruned student keeps its sparsity).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from stratum.engine.weights import load_causal_lm
from stratum.training.compression.prune import _copy_tokenizer, _decoder_linears


def shallow_student(teacher: Any, *, keep_every: int) -> Any:
    """A copy of the teacher with decoder layers 0, k, 2k, … kept."""
    if keep_every < 2:
        raise ValueError("keep_every must be at least 2 for a smaller student")
    student = copy.deepcopy(teacher)
    layers = student.model.layers
    kept = torch.nn.ModuleList(layers[i] for i in range(0, len(layers), keep_every))
    for index, layer in enumerate(kept):
        if hasattr(layer, "self_attn"):
            layer.self_attn.layer_idx = index
    student.model.layers = kept
    student.config.num_hidden_layers = len(kept)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = student.config.layer_types[: len(kept)]
    return student


def distill(
    teacher_dir: Path,
    target: Path,
    *,
    texts: list[str],
    student_dir: Path | None = None,
    keep_every: int = 2,
    steps: int = 50,
    batch_size: int = 4,
    max_length: int = 128,
    learning_rate: float = 5e-4,
    temperature: float = 2.0,
    hard_label_weight: float = 0.1,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> Any:
    from transformers import AutoTokenizer

    if not texts:
        raise ValueError("distillation needs training texts")
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = load_causal_lm(teacher_dir)
    student = load_causal_lm(student_dir) if student_dir else shallow_student(teacher, keep_every=keep_every)
    student.train()
    masks = [(layer.weight, layer.weight != 0) for layer in _decoder_linears(student)]
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        picks = torch.randint(len(texts), (batch_size,), generator=generator).tolist()
        batch = tokenizer(
            [texts[i] for i in picks],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        mask = batch["attention_mask"].bool()
        with torch.no_grad():
            teacher_logits = teacher(**batch, use_cache=False).logits
        student_logits = student(**batch, use_cache=False).logits
        kl = F.kl_div(
            F.log_softmax(student_logits[mask] / temperature, dim=-1),
            F.log_softmax(teacher_logits[mask] / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        ) * (temperature**2)
        labels = batch["input_ids"].masked_fill(~mask, -100)
        hard = F.cross_entropy(
            student_logits[:, :-1].reshape(-1, student_logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
        )
        loss = (1 - hard_label_weight) * kl + hard_label_weight * hard
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for weight, keep in masks:
                weight.mul_(keep)
        if on_step is not None:
            on_step(step + 1, float(loss.detach()))
    student.eval()
    student.save_pretrained(target, safe_serialization=True)
    _copy_tokenizer(teacher_dir, target)
    return student
