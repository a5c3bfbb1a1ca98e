"""Vector indexes behind one Protocol: exact (tests, small KBs), faiss HNSW (embedded), Milvus.

Every KB's vectors live in the store (``kb_chunks.vector``); an index is built from them and
answers nearest-neighbour queries by inner product (vectors are L2-normalised, so that is cosine).

* ``ExactIndex`` — numpy brute force. Exact, needs no build; under ~20k vectors it is as fast as
  any ANN index (a 10k x 384 matrix-vector product takes about a millisecond). Also the fake.
* ``HnswIndex`` — faiss-cpu ``IndexHNSWFlat`` (M=32, efConstruction 80, efSearch 128): the embedded
  default for large KBs. Chosen over usearch by ``benchmarks/kb_ann_bench.py``
  (see the README's knowledge-base section for the numbers).
* ``MilvusIndex`` — pymilvus ``MilvusClient``: a Milvus cluster by URL, or milvus-lite in-process
  with a file path (what CI tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from stratum.errors import InvalidRequest

# Below this many vectors ``auto`` uses exact search: it is as fast and needs no build.
ANN_THRESHOLD = 20_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest neighbours by inner product over a fixed set of (id, vector) pairs."""

    name: str

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Replace the contents with ``ids`` and their ``vectors`` (float32, normalised)."""

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) pairs, best first."""
        ...

    def __len__(self) -> int: ...


class ExactIndex:
    name = "exact"

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._vectors = np.zeros((0, 0), dtype=np.float32)

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        self._ids = list(ids)
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        if not self._ids:
            return []
        scores = self._vectors @ query.astype(np.float32)
        return top_k(scores, k, self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def top_positions(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Positions and scores of the ``k`` highest ``scores``, best first."""
    k = min(k, len(scores))
    if k <= 0:
        return []
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]


def top_k(scores: np.ndarray, k: int, ids: Sequence[str]) -> list[tuple[str, float]]:
    return [(ids[i], s) for i, s in top_positions(scores, k)]


class HnswIndex:
    name = "hnsw"

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._index: Any = None

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        faiss = _import("faiss", "faiss-cpu")
        index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        if len(ids):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        index.hnsw.efSearch = HNSW_EF_SEARCH
        self._ids, self._index = list(ids), index

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        if not self._ids:
            return []
        scores, positions = self._index.search(query.astype(np.float32)[None, :], min(k, len(self._ids)))
        return [(self._ids[p], float(s)) for p, s in zip(positions[0], scores[0], strict=True) if p >= 0]

    def __len__(self) -> int:
        return len(self._ids)


class MilvusIndex:
    """One Milvus collection per KB revision; ``uri`` is a server URL or a milvus-lite file path."""

    name = "milvus"

    def __init__(self, uri: str, collection: str) -> None:
        pymilvus = _import("pymilvus", "pymilvus")
        self._client = pymilvus.MilvusClient(uri)
        self._collection = collection
        self._count = 0

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        client = self._client
        if client.has_collection(self._collection):
            client.drop_collection(self._collection)
        client.create_collection(
            self._collection,
            dimension=int(vectors.shape[1]) if vectors.ndim == 2 and vectors.shape[1] else 1,
            primary_field_name="id",
            id_type="string",
            max_length=64,
            vector_field_name="vector",
            metric_type="IP",
            auto_id=False,
        )
        rows = [{"id": i, "vector": v.tolist()} for i, v in zip(ids, vectors, strict=True)]
        for start in range(0, len(rows), 1000):
            client.insert(self._collection, rows[start : start + 1000])
        self._count = len(rows)

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        if not self._count:
            return []
        found = self._client.search(
            self._collection,
            data=[query.astype(np.float32).tolist()],
            limit=min(k, self._count),
            output_fields=["id"],
        )
        return [(str(hit["id"]), float(hit["distance"])) for hit in found[0]]

    def drop(self) -> None:
        if self._client.has_collection(self._collection):
            self._client.drop_collection(self._collection)

    def close(self) -> None:
        self._client.close()

    def __len__(self) -> int:
        return self._count


def make_index(kind: str, n: int, *, milvus_uri: str | None = None, collection: str = "kb") -> VectorIndex:
    if kind == "auto":
        kind = "hnsw" if n >= ANN_THRESHOLD else "exact"
    if kind == "exact":
        return ExactIndex()
    if kind == "hnsw":
        return HnswIndex()
    if kind == "milvus":
        if not milvus_uri:
            raise InvalidRequest("index 'milvus' needs settings.milvus_uri", param="settings.milvus_uri")
        return MilvusIndex(milvus_uri, collection)
    raise InvalidRequest(f"unknown index {kind!r}", param="settings.index")


def _import(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{package} is needed for this index: pip install 'stratum[knowledge]'") from exc
