"""``stratum lineage MODEL@V``: what produced a model version and what it produced, as two trees."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from stratum.cli.output import print_json
from stratum.cli.store import open_database

if TYPE_CHECKING:
    from stratum.registry.lineage import LineageEdge

# Children shown under one node before "… N more" (feedback can number thousands).
_CHILDREN_SHOWN = 10


def _label(kind: str, node_id: str) -> Text:
    return Text.assemble((f"{kind} ", "bold"), node_id)


def _branch(
    tree: Tree,
    node: tuple[str, str],
    edges: dict[tuple[str, str], list[LineageEdge]],
    *,
    up: bool,
    seen: set[tuple[str, str]],
) -> None:
    children = edges.get(node, [])
    for edge in children[:_CHILDREN_SHOWN]:
        other = edge.source if up else edge.target
        label = _label(*other)
        label.append(f"  ({edge.relation})", style="dim")
        sub = tree.add(label)
        if other not in seen:
            seen.add(other)
            _branch(sub, other, edges, up=up, seen=seen)
    if len(children) > _CHILDREN_SHOWN:
        tree.add(Text(f"… {len(children) - _CHILDREN_SHOWN} more", style="dim"))


def lineage(
    node: Annotated[
        str, typer.Argument(help="NAME@VERSION of a model, or KIND:ID (dataset:faq@2, job:ID …).")
    ],
    depth: Annotated[int, typer.Option("--depth", min=1, max=16, help="Hops to follow each way.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show the lineage graph around a version: what produced it (upstream) and what it produced."""
    from stratum.registry.lineage import LineageService, parse_node
    from stratum.registry.service import RegistryService

    start = parse_node(node)
    with open_database() as db:
        if start[0] == "model":
            start = ("model", RegistryService(db).resolve(start[1]).ref)  # an unknown version is an error
        graph = LineageService(db).graph(start, depth)
    if as_json:
        print_json(graph.model_dump(mode="json"))
        return
    console = Console(highlight=False)
    for title, edge_list, up in (
        ("produced by", graph.upstream, True),
        ("produced", graph.downstream, False),
    ):
        by_node: dict[tuple[str, str], list[LineageEdge]] = defaultdict(list)
        for edge in edge_list:
            by_node[edge.target if up else edge.source].append(edge)
        root = Tree(Text.assemble(_label(*start), (f"  {title}", "dim")))
        if edge_list:
            _branch(root, start, by_node, up=up, seen={start})
        else:
            root.add(Text("nothing recorded", style="dim"))
        console.print(root)
