"""Parent → child dataset edges in the lineage graph (runs once ``stratum.registry.lineage`` exists)."""

from __future__ import annotations

import pytest

from stratum.data import DatasetService
from stratum.data.transforms import TransformService
from stratum.storage import Database
from tests.data.conftest import CHINESE_SFT, WriteJsonl

lineage = pytest.importorskip(
    "stratum.registry.lineage", reason="the lineage graph comes with the releases work"
)


def test_each_derived_version_is_an_edge(
    db: Database, datasets: DatasetService, write_jsonl: WriteJsonl
) -> None:
    datasets.import_file(write_jsonl("a.jsonl", CHINESE_SFT), name="中文")
    TransformService(datasets).run("中文@1", ["clean", "split"])
    graph = lineage.LineageService(db).graph(("dataset", "中文@3"), depth=5)
    edges = {(e.source_id, e.target_id, e.relation) for e in graph.upstream}
    assert edges == {("中文@1", "中文@2", "derived"), ("中文@2", "中文@3", "derived")}
    names = {e.target_id: e.metadata["transform"]["name"] for e in graph.upstream}
    assert names == {"中文@2": "clean", "中文@3": "split"}
