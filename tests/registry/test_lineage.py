"""Lineage edges: validation, idempotence, graph walks both ways, the derived adapter → base edge."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from stratum.errors import InvalidRequest
from stratum.registry import repo
from stratum.registry.lineage import LineageService, parse_node
from stratum.registry.service import RegistryService
from stratum.registry.tables import LineageEdgeRow
from stratum.storage import Database


def _chain(lineage: LineageService) -> None:
    lineage.add_edge(source=("dataset", "客服问答@3"), target=("job", "job-1"), relation="trained_on")
    lineage.add_edge(source=("job", "job-1"), target=("model", "bot@2"), relation="produced", actor="jobs")
    lineage.add_edge(source=("model", "bot@2"), target=("eval", "ev-9"), relation="evaluated")
    lineage.add_edge(source=("model", "bot@2"), target=("deployment", "bot"), relation="deployed")
    lineage.add_edge(source=("deployment", "bot"), target=("feedback", "fb-1"), relation="feedback")


def test_graph_both_ways(db: Database) -> None:
    lineage = LineageService(db)
    _chain(lineage)
    up = lineage.upstream(("model", "bot@2"), depth=5)
    assert [(e.source, e.target, e.depth) for e in up] == [
        (("job", "job-1"), ("model", "bot@2"), 1),
        (("dataset", "客服问答@3"), ("job", "job-1"), 2),
    ]
    assert up[0].actor == "jobs"
    down = lineage.downstream(("model", "bot@2"), depth=5)
    assert {(e.target, e.depth) for e in down} == {
        (("eval", "ev-9"), 1),
        (("deployment", "bot"), 1),
        (("feedback", "fb-1"), 2),
    }
    assert lineage.downstream(("model", "bot@2"), depth=1) == [e for e in down if e.depth == 1]
    graph = lineage.graph(("dataset", "客服问答@3"), depth=2)
    assert graph.upstream == [] and [e.target for e in graph.downstream] == [
        ("job", "job-1"),
        ("model", "bot@2"),
    ]


def test_edges_are_idempotent(db: Database) -> None:
    lineage = LineageService(db)
    _chain(lineage)
    _chain(lineage)
    with db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(LineageEdgeRow)) == 5
    # The same pair with another relation is another edge.
    lineage.add_edge(source=("model", "bot@2"), target=("eval", "ev-9"), relation="benchmarked")
    assert len(lineage.downstream(("model", "bot@2"), depth=1)) == 3


def test_cycles_terminate(db: Database) -> None:
    lineage = LineageService(db)
    lineage.add_edge(source=("model", "a@1"), target=("model", "b@1"), relation="distilled")
    lineage.add_edge(source=("model", "b@1"), target=("model", "a@1"), relation="distilled")
    assert len(lineage.downstream(("model", "a@1"), depth=16)) == 2


@pytest.mark.parametrize(
    ("source", "target", "relation"),
    [
        (("widget", "x"), ("model", "a@1"), "r"),
        (("model", "no-version"), ("job", "j"), "r"),
        (("job", ""), ("model", "a@1"), "r"),
        (("job", "j"), ("job", "j"), "r"),
        (("job", "j"), ("model", "a@1"), ""),
    ],
)
def test_bad_edges_are_refused(
    db: Database, source: tuple[str, str], target: tuple[str, str], relation: str
) -> None:
    with pytest.raises(InvalidRequest):
        LineageService(db).add_edge(source=source, target=target, relation=relation)


def test_parse_node() -> None:
    assert parse_node("bot@2") == ("model", "bot@2")
    assert parse_node("dataset:客服@1") == ("dataset", "客服@1")
    assert parse_node("job:abc") == ("job", "abc")
    with pytest.raises(InvalidRequest):
        parse_node("bot")


def test_adapter_base_edge_comes_from_the_registry(db: Database) -> None:
    registry = RegistryService(db)
    base = registry.add_model(name="base", source="upstream", upstream_url="http://127.0.0.1:9/v1")
    with db.session() as session:
        model = repo.create_model(session, name="bot-lora", kind="chat", description=None)
        repo.add_version(
            session, model=model, created_by="t", source="local", variant="adapter", base_version_id=base.id
        )
    lineage = LineageService(db)
    [edge] = lineage.upstream(("model", "bot-lora@1"))
    assert (edge.source, edge.relation) == (("model", "base@1"), "base_of")
    [edge] = lineage.downstream(("model", "base@1"))
    assert edge.target == ("model", "bot-lora@1")
