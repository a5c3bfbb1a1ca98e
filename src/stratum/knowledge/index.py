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
# HNSW tombstones past this fraction of the live vectors: the graph is rebuilt without them.
TOMBSTONE_REBUILD = 0.2


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest neighbours by inner product over a fixed set of (id, vector) pairs."""

    name: str

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Replace the contents with ``ids`` and their ``vectors`` (float32, normalised)."""

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The ``k`` best (id, score) pairs, best first."""
        ...

    def updated(self, removed: set[str], ids: Sequence[str], vectors: np.ndarray) -> VectorIndex:
        """The index without the ``removed`` ids and with ``ids``/``vectors`` added, without a
        rebuild from scratch where the index allows it. Exact and HNSW return a new object (a
        search running on the old one is not disturbed); Milvus changes its collection."""
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

    def updated(self, removed: set[str], ids: Sequence[str], vectors: np.ndarray) -> ExactIndex:
        keep = [i for i, x in enumerate(self._ids) if x not in removed]
        fresh = ExactIndex()
        fresh._ids = [self._ids[i] for i in keep] + list(ids)
        added = np.ascontiguousarray(vectors, dtype=np.float32)
        fresh._vectors = np.concatenate([self._vectors[keep], added]) if keep else added
        return fresh

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
    """faiss HNSW cannot remove vectors: a removed one becomes a tombstone, skipped at query time
    through an ``IDSelector``; past ``TOMBSTONE_REBUILD`` of the live count the graph is rebuilt
    from the live vectors (read back from the index's flat storage)."""

    name = "hnsw"

    def __init__(self) -> None:
        self._ids: list[str] = []  # by faiss position, tombstones included
        self._index: Any = None
        self._dead: frozenset[int] = frozenset()
        self._params: Any = None  # search parameters skipping the tombstones
        self._keep: Any = None  # the selectors the parameters point at (SWIG does not own them)

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        faiss = _import("faiss", "faiss-cpu")
        index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        if len(ids):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        index.hnsw.efSearch = HNSW_EF_SEARCH
        self._ids, self._index = list(ids), index
        self._dead, self._params, self._keep = frozenset(), None, None

    @property
    def tombstones(self) -> int:
        return len(self._dead)

    def updated(self, removed: set[str], ids: Sequence[str], vectors: np.ndarray) -> HnswIndex:
        faiss = _import("faiss", "faiss-cpu")
        dead = self._dead | {p for p, x in enumerate(self._ids) if x in removed}
        live = len(self._ids) + len(ids) - len(dead)
        fresh = HnswIndex()
        if self._index is None or len(dead) > TOMBSTONE_REBUILD * max(live, 1):
            keep = [p for p in range(len(self._ids)) if p not in dead]
            old = self._index.reconstruct_n(0, len(self._ids)) if self._ids else None
            parts = ([old[keep]] if old is not None and keep else []) + [np.asarray(vectors, np.float32)]
            fresh.build([self._ids[p] for p in keep] + list(ids), np.concatenate(parts))
            return fresh
        fresh._index = faiss.clone_index(self._index)
        fresh._index.hnsw.efSearch = HNSW_EF_SEARCH
        if len(ids):
            fresh._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        fresh._ids = self._ids + list(ids)
        fresh._dead = frozenset(dead)
        if dead:
            batch = faiss.IDSelectorBatch(np.fromiter(sorted(dead), dtype="int64"))
            skip = faiss.IDSelectorNot(batch)
            params = faiss.SearchParametersHNSW()
            params.efSearch = HNSW_EF_SEARCH
            params.sel = skip
            fresh._params, fresh._keep = params, (batch, skip)
        return fresh

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        if len(self) == 0:
            return []
        scores, positions = self._index.search(
            query.astype(np.float32)[None, :], min(k, len(self)), params=self._params
        )
        return [
            (self._ids[p], float(s))
            for p, s in zip(positions[0], scores[0], strict=True)
            if p >= 0 and p not in self._dead
        ]

    def __len__(self) -> int:
        return len(self._ids) - len(self._dead)


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

    def updated(self, removed: set[str], ids: Sequence[str], vectors: np.ndarray) -> MilvusIndex:
        """Delete by id and insert, in the KB's collection."""
        client = self._client
        if not client.has_collection(self._collection):
            self.build(list(ids), vectors)
            return self
        if removed:
            gone = sorted(removed)
            for start in range(0, len(gone), 1000):
                client.delete(self._collection, ids=gone[start : start + 1000])
        rows = [{"id": i, "vector": v.tolist()} for i, v in zip(ids, vectors, strict=True)]
        for start in range(0, len(rows), 1000):
            client.insert(self._collection, rows[start : start + 1000])
        self._count += len(rows) - len(removed)
        return self

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


def index_kind(kind: str, n: int) -> str:
    """The index ``make_index`` picks for ``kind`` at ``n`` vectors."""
    if kind == "auto":
        return "hnsw" if n >= ANN_THRESHOLD else "exact"
    return kind


def make_index(kind: str, n: int, *, milvus_uri: str | None = None, collection: str = "kb") -> VectorIndex:
    kind = index_kind(kind, n)
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
