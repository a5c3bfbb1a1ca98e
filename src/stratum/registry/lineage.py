"""The lineage graph: dataset version → training job → model/adapter version → evaluations →
deployments → feedback, stored as edges.

A node is a ``(kind, id)`` pair:

    dataset      "name@version"       job        job id
    model        "name@version"       eval       evaluation run id
    deployment   deployment name      feedback   feedback id

An edge reads "source produced (or feeds) target" with a ``relation`` word (``trained_on``,
``produced``, ``evaluated``, ``deployed``, ``feedback``, ``base_of`` …). Adding the same edge twice
is a no-op, so pipelines can record lineage at every retry. Besides the stored edges, an adapter's
link to its base version (``model_versions.base_version_id``) is reported as a ``base_of`` edge, so
it never has to be recorded twice.

Lower domains (datasets, jobs, evals) write edges through ``LineageService.add_edge``; the CLI
prints ``graph`` both ways.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from stratum.errors import InvalidRequest, StratumError
from stratum.registry.schemas import parse_ref
from stratum.registry.tables import LineageEdgeRow, ModelRow, ModelVersionRow
from stratum.storage import Database, advisory_lock, utcnow

NodeKind = Literal["dataset", "job", "model", "eval", "deployment", "feedback"]
NODE_KINDS: tuple[str, ...] = ("dataset", "job", "model", "eval", "deployment", "feedback")
Node = tuple[str, str]
# Relation of the derived adapter → base edge (not stored: read from model_versions).
BASE_RELATION = "base_of"
# A graph query never walks deeper than this, whatever the caller asks: lineage chains are short
# (dataset → job → model → eval/deployment → feedback) and a cycle recorded by mistake must end.
MAX_DEPTH = 16
_ID_LIMIT = 200


class LineageEdge(BaseModel):
    """One edge; ``depth`` is its distance (1 = touches the queried node) in a graph answer."""

    model_config = ConfigDict(frozen=True)

    source_kind: str
    source_id: str
    target_kind: str
    target_id: str
    relation: str
    actor: str = "system"
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    depth: int = 1

    @property
    def source(self) -> Node:
        return (self.source_kind, self.source_id)

    @property
    def target(self) -> Node:
        return (self.target_kind, self.target_id)


class LineageGraph(BaseModel):
    """Both directions around one node: what produced it (upstream) and what it produced."""

    node_kind: str
    node_id: str
    upstream: list[LineageEdge]
    downstream: list[LineageEdge]


def validate_node(node: Node, *, param: str) -> Node:
    if not (isinstance(node, tuple) and len(node) == 2):
        raise InvalidRequest(f"{param} must be a (kind, id) pair, got {node!r}.", param=param)
    kind, node_id = node
    if kind not in NODE_KINDS:
        raise InvalidRequest(
            f"{param} kind must be one of {', '.join(NODE_KINDS)}, got {kind!r}.", param=param
        )
    if not isinstance(node_id, str) or not node_id.strip() or len(node_id) > _ID_LIMIT:
        raise InvalidRequest(f"{param} id must be 1-{_ID_LIMIT} characters, got {node_id!r}.", param=param)
    if kind in ("model", "dataset"):
        name, _, version = node_id.rpartition("@")
        if not name or not version:
            raise InvalidRequest(
                f"a {kind} node is identified as name@version, got {node_id!r}.", param=param
            )
    return (kind, node_id.strip())


def parse_node(text: str) -> Node:
    """``kind:id`` (``dataset:faq@3``) or a bare ``name@version``, which means a model."""
    kind, sep, node_id = text.partition(":")
    if sep and kind in NODE_KINDS:
        return validate_node((kind, node_id), param="node")
    return validate_node(("model", text), param="node")


def _public(row: LineageEdgeRow, depth: int) -> LineageEdge:
    return LineageEdge(
        source_kind=row.source_kind,
        source_id=row.source_id,
        target_kind=row.target_kind,
        target_id=row.target_id,
        relation=row.relation,
        actor=row.actor,
        metadata=row.meta,
        created_at=row.created_at,
        depth=depth,
    )


class LineageService:
    """Serves: pipelines that record lineage (jobs, data, evals, deployments, feedback), the CLI
    (``stratum lineage``) and the admin API."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_edge(
        self,
        *,
        source: tuple[str, str],
        target: tuple[str, str],
        relation: str,
        actor: str = "system",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record ``source`` → ``target``; recording an existing edge again changes nothing."""
        with self._db.session() as session:
            add_edge(session, source=source, target=target, relation=relation, actor=actor, metadata=metadata)

    def upstream(self, node: tuple[str, str], depth: int = 3) -> list[LineageEdge]:
        """Edges leading into ``node`` (what produced it), breadth first, up to ``depth`` hops."""
        return self._walk(validate_node(node, param="node"), depth, up=True)

    def downstream(self, node: tuple[str, str], depth: int = 3) -> list[LineageEdge]:
        """Edges leaving ``node`` (what it produced), breadth first, up to ``depth`` hops."""
        return self._walk(validate_node(node, param="node"), depth, up=False)

    def graph(self, node: tuple[str, str], depth: int = 3) -> LineageGraph:
        node = validate_node(node, param="node")
        return LineageGraph(
            node_kind=node[0],
            node_id=node[1],
            upstream=self._walk(node, depth, up=True),
            downstream=self._walk(node, depth, up=False),
        )

    def _walk(self, start: Node, depth: int, *, up: bool) -> list[LineageEdge]:
        if depth < 1:
            raise InvalidRequest("depth must be at least 1.", param="depth")
        depth = min(depth, MAX_DEPTH)
        seen_nodes = {start}
        seen_edges: set[tuple[str, str, str, str, str]] = set()
        result: list[LineageEdge] = []
        frontier: deque[Node] = deque([start])
        with self._db.session(write=False) as session:
            for level in range(1, depth + 1):
                if not frontier:
                    break
                batch = list(frontier)
                frontier.clear()
                for edge in _edges_touching(session, batch, up=up):
                    key = (edge.source_kind, edge.source_id, edge.target_kind, edge.target_id, edge.relation)
                    if key in seen_edges:
                        continue
                    seen_edges.add(key)
                    result.append(edge.model_copy(update={"depth": level}))
                    following = edge.source if up else edge.target
                    if following not in seen_nodes:
                        seen_nodes.add(following)
                        frontier.append(following)
        return result


def add_edge(
    session: Session,
    *,
    source: tuple[str, str],
    target: tuple[str, str],
    relation: str,
    actor: str = "system",
    metadata: dict[str, Any] | None = None,
) -> None:
    """``LineageService.add_edge`` inside the caller's transaction (feedback, deployments)."""
    source = validate_node(source, param="source")
    target = validate_node(target, param="target")
    if source == target:
        raise InvalidRequest("a lineage edge cannot point at its own source.", param="target")
    if not relation or len(relation) > 64:
        raise InvalidRequest("relation must be 1-64 characters.", param="relation")
    # Two writers recording the same edge at once must not both insert it (PostgreSQL; SQLite
    # writers are serialised already).
    advisory_lock(session, f"lineage:{source}:{target}:{relation}")
    exists = session.scalar(
        select(LineageEdgeRow.id).where(
            LineageEdgeRow.source_kind == source[0],
            LineageEdgeRow.source_id == source[1],
            LineageEdgeRow.target_kind == target[0],
            LineageEdgeRow.target_id == target[1],
            LineageEdgeRow.relation == relation,
        )
    )
    if exists is not None:
        return
    session.add(
        LineageEdgeRow(
            source_kind=source[0],
            source_id=source[1],
            target_kind=target[0],
            target_id=target[1],
            relation=relation,
            actor=actor[:128],
            meta=metadata or {},
            created_at=utcnow(),
        )
    )
    session.flush()


def _edges_touching(session: Session, nodes: list[Node], *, up: bool) -> list[LineageEdge]:
    """Stored edges ending (``up``) or starting at one of ``nodes``, plus adapter/base edges."""
    kind_col, id_col = (
        (LineageEdgeRow.target_kind, LineageEdgeRow.target_id)
        if up
        else (LineageEdgeRow.source_kind, LineageEdgeRow.source_id)
    )
    condition = or_(*(and_(kind_col == kind, id_col == node_id) for kind, node_id in nodes))
    rows = session.scalars(select(LineageEdgeRow).where(condition).order_by(LineageEdgeRow.id)).all()
    edges = [_public(row, 1) for row in rows]
    edges.extend(_base_edges(session, [node_id for kind, node_id in nodes if kind == "model"], up=up))
    return edges


def _base_edges(session: Session, refs: Iterable[str], *, up: bool) -> list[LineageEdge]:
    """Adapter/merged versions and their base, from the registry itself."""
    pairs = []
    for ref in refs:
        try:
            name, version = parse_ref(ref)
        except StratumError:  # a model node that is not a valid ref has no registry row
            continue
        if isinstance(version, int):
            pairs.append((name, version))
    if not pairs:
        return []
    child, base, child_model, base_model = (
        ModelVersionRow,
        ModelVersionRow.__table__.alias("base"),
        ModelRow,
        ModelRow.__table__.alias("base_model"),
    )
    query = (
        select(
            child_model.name,
            child.version,
            base_model.c.name,
            base.c.version,
            child.created_by,
            child.created_at,
        )
        .join(child_model, child_model.id == child.model_id)
        .join(base, base.c.id == child.base_version_id)
        .join(base_model, base_model.c.id == base.c.model_id)
    )
    name_col, version_col = (child_model.name, child.version) if up else (base_model.c.name, base.c.version)
    query = query.where(or_(*(and_(name_col == name, version_col == number) for name, number in pairs)))
    edges = []
    for name, version, base_name, base_version, actor, created in session.execute(query):
        edges.append(
            LineageEdge(
                source_kind="model",
                source_id=f"{base_name}@{base_version}",
                target_kind="model",
                target_id=f"{name}@{version}",
                relation=BASE_RELATION,
                actor=actor,
                created_at=created,
            )
        )
    return edges
