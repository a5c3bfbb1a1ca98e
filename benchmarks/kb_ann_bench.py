"""Embedded ANN index for knowledge bases: faiss-cpu HNSW vs usearch HNSW vs exact numpy.

Prints recall@10 (against exact inner-product search), query latency p50/p95 (one query at a
time, as the gateway issues them) and build time, at 20k and 100k 384-d vectors, on two kinds
of data:

* ``random``: i.i.d. Gaussian vectors, normalised (the textbook worst case for graph indexes:
  no structure, every neighbour nearly equidistant);
* ``clustered``: a mixture of 256 Gaussian clusters (unit spread around centres offset by +2),
  normalised — closer to sentence embeddings, which sit in a narrow cone with topic clusters.
  Queries are drawn the same way (not from the index) so that they are not trivially found.

The baseline (exact numpy search) runs in the same process. Run:
``OMP_NUM_THREADS=1 python benchmarks/kb_ann_bench.py [--sizes 20000,100000]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

DIM = 384
QUERIES = 200
K = 10


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def data(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "random":
        return normalise(rng.standard_normal((n, DIM))), normalise(rng.standard_normal((QUERIES, DIM)))
    centres = rng.standard_normal((256, DIM)) + 2.0  # a shared offset: embeddings sit in a cone

    def draw(m: int) -> np.ndarray:
        labels = rng.integers(0, len(centres), m)
        return normalise(
            centres[labels] + 0.35 * np.sqrt(DIM) / np.sqrt(DIM) * rng.standard_normal((m, DIM)) * 3
        )

    return draw(n), draw(QUERIES)


def exact(base: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    out = np.empty((len(queries), K), dtype=np.int64)
    times = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        scores = base @ q
        top = np.argpartition(-scores, K)[:K]
        out[i] = top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - t)
    return out, times


def faiss_build(base: np.ndarray) -> tuple[object, float]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(base)
    return index, time.perf_counter() - t


def faiss_search(index: object, queries: np.ndarray, ef: int) -> tuple[np.ndarray, list[float]]:
    index.hnsw.efSearch = ef  # type: ignore[attr-defined]
    out = np.empty((len(queries), K), dtype=np.int64)
    times = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        _, ids = index.search(q[None, :], K)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t)
        out[i] = ids[0]
    return out, times


def usearch_build(base: np.ndarray, dtype: str) -> tuple[object, float]:
    from usearch.index import Index

    t = time.perf_counter()
    index = Index(ndim=DIM, metric="ip", dtype=dtype, connectivity=32, expansion_add=80)
    index.add(np.arange(len(base)), base, threads=1)
    return index, time.perf_counter() - t


def usearch_search(index: object, queries: np.ndarray, ef: int) -> tuple[np.ndarray, list[float]]:
    index.expansion_search = ef  # type: ignore[attr-defined]
    out = np.empty((len(queries), K), dtype=np.int64)
    times = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found = index.search(q, K, threads=1)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t)
        keys = np.asarray(found.keys, dtype=np.int64)
        out[i, : len(keys)] = keys
        out[i, len(keys) :] = -1
    return out, times


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.array(times) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--kinds", default="clustered,random")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average {os.getloadavg()[0]:.2f}")
    print("| data | n | index | recall@10 | p50 ms | p95 ms | build s |")
    print("|---|--:|---|--:|--:|--:|--:|")
    for kind in args.kinds.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            base, queries = data(kind, n, rng)
            truth, times = exact(base, queries)
            print(
                f"| {kind} | {n} | exact numpy (baseline) | 1.000 | "
                f"{ms(times, 50):.2f} | {ms(times, 95):.2f} | 0 |"
            )
            index, build = faiss_build(base)
            for ef in (64, 128, 256):
                found, times = faiss_search(index, queries, ef)
                print(
                    f"| {kind} | {n} | faiss HNSW M=32 ef={ef} | {recall(found, truth):.3f} | "
                    f"{ms(times, 50):.2f} | {ms(times, 95):.2f} | {build:.1f} |",
                    flush=True,
                )
            for dtype in ("f32", "i8"):
                index, build = usearch_build(base, dtype)
                for ef in (128, 256):
                    found, times = usearch_search(index, queries, ef)
                    print(
                        f"| {kind} | {n} | usearch HNSW M=32 ef={ef} {dtype} | {recall(found, truth):.3f} | "
                        f"{ms(times, 50):.2f} | {ms(times, 95):.2f} | {build:.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
