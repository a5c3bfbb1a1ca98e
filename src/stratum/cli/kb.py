"""``stratum kb …``: knowledge bases — create, list, ingest, search, eval, export, import, delete,
and their documents (list, remove).

Runs in this process against the platform's store (like every other CLI group), with its own
encoder: a running gateway sees new chunks on its next search. A KB is named ``NAME`` when only
one project has a KB of that name, else ``ORG/PROJECT/NAME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stratum.cli.output import CliError, print_fields, print_json, print_table
from stratum.cli.store import open_database

if TYPE_CHECKING:
    from stratum.engine.base import Encoder
    from stratum.jobs.service import JobService
    from stratum.knowledge.schemas import KbPublic
    from stratum.knowledge.service import KnowledgeService
    from stratum.settings import Settings
    from stratum.storage.db import Database

app = typer.Typer(
    help="Knowledge bases: ingest documents, search them, answer with citations.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
KbArg = Annotated[str, typer.Argument(metavar="KB", help="NAME or ORG/PROJECT/NAME.")]
Mode = Annotated[
    str | None, typer.Option("--mode", help="hybrid, dense or bm25 (default: the KB's setting).")
]


@contextmanager
def _knowledge() -> Iterator[tuple[Database, KnowledgeService]]:
    from stratum.knowledge.service import KnowledgeService

    with open_database() as db:
        yield db, KnowledgeService(db)


def _encoder(db: Database, name: str) -> Encoder:
    """The KB's embedding model, loaded in this process: the bundled e5 or a registered one."""
    from stratum.knowledge.encoders import load_kb_encoder

    return load_kb_encoder(db, name)


def _check_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in ("hybrid", "dense", "bm25"):
        raise CliError(f"--mode is hybrid, dense or bm25, not {mode!r}", exit_code=2)
    return mode


def _summary(kb: KbPublic) -> dict[str, object]:
    s = kb.settings
    return {
        "kb": kb.ref,
        "documents": kb.documents,
        "chunks": kb.chunks,
        "chunk_size": s.chunk_size,
        "overlap": s.chunk_overlap,
        "embedding": s.embedding_model,
        "generator": s.generator_model or "(extractive)",
        "retrieval": s.retrieval if s.retrieval != "hybrid" else f"hybrid ({s.fusion})",
    }


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    project: Annotated[str, typer.Option("--project", "-p", metavar="ORG/PROJECT", help="Owning project.")],
    description: Annotated[str | None, typer.Option("--description")] = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Tokens per chunk.")] = 256,
    chunk_overlap: Annotated[int, typer.Option("--chunk-overlap", help="Tokens shared by neighbours.")] = 32,
    embedding_model: Annotated[
        str,
        typer.Option(
            "--embedding-model",
            help="Registered embedding model; the distilled multilingual-e5-small-6l and -4l embed "
            "about 2x and 3x as fast, with somewhat lower retrieval quality.",
        ),
    ] = "multilingual-e5-small",
    generator: Annotated[
        str | None, typer.Option("--generator", help="Chat model answering kb/NAME; unset: extractive.")
    ] = None,
    retrieval: Annotated[str, typer.Option("--retrieval", help="hybrid, dense or bm25.")] = "hybrid",
    index: Annotated[str, typer.Option("--index", help="auto, hnsw, exact or milvus.")] = "auto",
    milvus_uri: Annotated[
        str | None, typer.Option("--milvus-uri", help="Milvus URL or milvus-lite file.")
    ] = None,
    refusal_threshold: Annotated[
        float | None, typer.Option("--refusal-threshold", help="Cosine under which answers refuse.")
    ] = None,
    mmr: Annotated[bool, typer.Option("--mmr/--no-mmr", help="Diversify results (MMR).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a knowledge base in a project."""
    from stratum.knowledge.schemas import KbCreate, KbSettings

    values: dict[str, object] = {
        "chunk_size": chunk_size,
        "chunk_overlap": chunk_overlap,
        "embedding_model": embedding_model,
        "generator_model": generator,
        "retrieval": retrieval,
        "index": index,
        "milvus_uri": milvus_uri,
        "mmr": mmr,
    }
    if refusal_threshold is not None:
        values["refusal_threshold"] = refusal_threshold
    spec = KbCreate(name=name, description=description, settings=KbSettings.model_validate(values))
    with _knowledge() as (_, service):
        kb = service.create(spec, project=project)
    if as_json:
        print_json(kb.model_dump(mode="json"))
        return
    print_fields(_summary(kb), title="knowledge base created")


@app.command("list")
def list_kbs(as_json: JsonFlag = False) -> None:
    """List knowledge bases with their sizes."""
    with _knowledge() as (_, service):
        kbs = service.list()
    if as_json:
        print_json([kb.model_dump(mode="json") for kb in kbs])
        return
    print_table(
        [_summary(kb) for kb in kbs],
        ("kb", "documents", "chunks", "chunk_size", "embedding", "generator"),
        empty="no knowledge bases yet; create one with `stratum kb create NAME --project ORG/PROJECT`",
    )


@app.command("set")
def set_settings(
    kb: KbArg,
    generator: Annotated[
        str | None, typer.Option("--generator", help="Chat model answering kb/NAME.")
    ] = None,
    refusal_threshold: Annotated[float | None, typer.Option("--refusal-threshold")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sources given to the generator.")] = None,
    retrieval: Annotated[str | None, typer.Option("--retrieval", help="hybrid, dense or bm25.")] = None,
    fusion: Annotated[
        str | None, typer.Option("--fusion", help="Hybrid fusion: relative, rrf or gated.")
    ] = None,
    dense_weight: Annotated[
        float | None, typer.Option("--dense-weight", help="rrf/relative: the dense list's share (0-1).")
    ] = None,
    read_roles: Annotated[str | None, typer.Option("--read-roles", help="e.g. developer,viewer")] = None,
    write_roles: Annotated[str | None, typer.Option("--write-roles", help="e.g. developer")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a KB's settings (options left out keep their value)."""
    from stratum.knowledge.schemas import KbUpdate

    sent = {
        "generator_model": generator,
        "refusal_threshold": refusal_threshold,
        "top_k": top_k,
        "retrieval": retrieval,
        "fusion": fusion,
        "dense_weight": dense_weight,
        "read_roles": read_roles.split(",") if read_roles is not None else None,
        "write_roles": write_roles.split(",") if write_roles is not None else None,
    }
    with _knowledge() as (_, service):
        found = service.update(
            service.resolve(kb), KbUpdate(settings={k: v for k, v in sent.items() if v is not None})
        )
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    print_fields(_summary(found), title="settings updated")


@contextmanager
def _with_jobs() -> Iterator[tuple[KnowledgeService, JobService, Settings]]:
    from stratum.jobs.service import JobService
    from stratum.settings import Settings

    settings = Settings()
    with _knowledge() as (db, service):
        yield service, JobService(db, jobs_dir=settings.jobs_dir), settings


@app.command("delete")
def delete(kb: KbArg) -> None:
    """Delete a knowledge base with its documents, chunks and uploaded files (its queued or
    running ingest is cancelled)."""
    from stratum.knowledge.removal import delete_kb

    with _with_jobs() as (service, jobs, settings):
        found = service.resolve(kb)
        delete_kb(jobs, service, found, settings.artifacts_dir)
    typer.echo(f"deleted {found.ref}")


@app.command("documents")
def documents(kb: KbArg, as_json: JsonFlag = False) -> None:
    """List a knowledge base's documents (source, status, pages, chunks)."""
    with _knowledge() as (_, service):
        found = service.documents(service.resolve(kb))
    if as_json:
        print_json([d.model_dump(mode="json") for d in found])
        return
    print_table(
        [
            {
                "source": d.source,
                "status": d.status,
                "pages": d.pages,
                "chunks": d.chunks_done,
                "tags": ",".join(d.tags),
                "updated": f"{d.updated_at:%Y-%m-%d %H:%M}",
            }
            for d in found
        ],
        ("source", "status", "pages", "chunks", "tags", "updated"),
        empty=f"{kb} has no documents yet; add some with `stratum kb ingest {kb} PATH`",
    )


@app.command("remove")
def remove(
    kb: KbArg,
    sources: Annotated[
        list[str],
        typer.Argument(metavar="SOURCE", help="Documents to remove, as `kb documents` lists them."),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Remove documents with their chunks and uploaded files (all named or none)."""
    from stratum.knowledge.removal import remove_documents

    with _with_jobs() as (service, jobs, settings):
        removed = remove_documents(jobs, service, service.resolve(kb), sources, settings.artifacts_dir)
    if as_json:
        print_json([d.model_dump(mode="json") for d in removed])
        return
    for d in removed:
        typer.echo(f"removed {d.source} ({d.chunks_done} chunk{'' if d.chunks_done == 1 else 's'})")


@app.command("ingest")
def ingest(
    kb: KbArg,
    paths: Annotated[
        list[Path] | None, typer.Argument(metavar="[PATH]...", help="Files and folders.")
    ] = None,
    urls: Annotated[
        list[str] | None, typer.Option("--url", help="An http(s) page to fetch and ingest (repeatable).")
    ] = None,
    tags: Annotated[
        str | None, typer.Option("--tags", help="Comma-separated tags for these documents.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Chunks embedded per commit.")] = 32,
    background: Annotated[
        bool, typer.Option("--background", help="Queue a kb_ingest job for a worker and return.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Ingest files, folders (saved web pages keep their canonical URL as source) and URLs:
    unchanged files are skipped, changed ones replaced, an interrupted run resumed where it
    stopped. --background queues the work as a job (`stratum jobs show ID` follows it)."""
    from stratum.knowledge.web import check_url

    paths, urls = list(paths or []), [check_url(u) for u in urls or []]
    if not paths and not urls:
        raise CliError("give files/folders to ingest, or --url URL", exit_code=2)
    from stratum.cli.kb_ingest import ingest_background, ingest_here

    tag_list = [t for t in (tags or "").split(",") if t]
    if background:
        ingest_background(kb, paths, urls, tag_list, batch_size, as_json)
        return
    ingest_here(kb, paths, urls, tag_list, batch_size, as_json)


@app.command("search")
def search(
    kb: KbArg,
    query: Annotated[str, typer.Argument(metavar="QUERY")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many chunks.")] = 5,
    mode: Mode = None,
    source: Annotated[str | None, typer.Option("--source", help="Only these source files (glob).")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only documents with this tag.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ranked chunks for QUERY: source, page, heading path, chunk id, score and text."""
    from stratum.knowledge.schemas import SearchFilters, SearchRequest

    filters = SearchFilters(sources=[source] if source else [], tags=[tag] if tag else [])
    request = SearchRequest(query=query, k=k, mode=_check_mode(mode), filters=filters)  # type: ignore[arg-type]
    with _knowledge() as (db, service):
        found = service.resolve(kb)
        encoder = (
            None
            if (request.mode or found.settings.retrieval) == "bm25"
            else _encoder(db, found.settings.embedding_model)
        )
        result = service.search(found, request, encoder=encoder)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    for hit in result.hits:
        where = " > ".join(hit.heading_path)
        page = f" p.{hit.page}" if hit.page is not None else ""
        typer.echo(f"[{hit.rank}] {hit.source}{page} {where}  score={hit.score:.4f}  id={hit.chunk_id}")
        typer.echo(f"    {hit.text[:200]}")
    if not result.hits:
        typer.echo("no matching chunks")


@app.command("eval")
def evaluate(
    kb: KbArg,
    questions: Annotated[Path, typer.Argument(metavar="QUESTIONS.jsonl", exists=True, dir_okay=False)],
    k: Annotated[int, typer.Option("-k", min=1, max=100)] = 5,
    compare: Annotated[
        str, typer.Option("--compare", help="Retrieval modes side by side, e.g. hybrid,dense,bm25.")
    ] = "hybrid,dense,bm25",
    against: Annotated[
        list[str] | None, typer.Option("--against", help="Another KB (e.g. other chunk size) to compare.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """hit@k, MRR, answer-string recall and latency, per configuration side by side."""
    from stratum.knowledge.evaluation import dump_reports, evaluate, load_questions
    from stratum.knowledge.schemas import SearchRequest

    items = load_questions(questions)
    modes = [_check_mode(m.strip()) for m in compare.split(",") if m.strip()]
    reports = []
    with _knowledge() as (db, service):
        for ref in [kb, *(against or [])]:
            found = service.resolve(ref)
            encoder = _encoder(db, found.settings.embedding_model)
            service.snapshot(found)  # build the indexes before timing queries
            for mode in modes:

                def run(
                    request: SearchRequest,
                    found: KbPublic = found,
                    mode: str | None = mode,
                    encoder: Encoder = encoder,
                ) -> object:
                    return service.search(found, request.model_copy(update={"mode": mode}), encoder=encoder)

                settings = found.settings
                label = f"{found.name} {mode} (chunk {settings.chunk_size}, {settings.embedding_model})"
                reports.append(evaluate(label, items, run, k=k))  # type: ignore[arg-type]
    if as_json:
        typer.echo(dump_reports(reports))
        return
    print_table([r.row() for r in reports], tuple(reports[0].row().keys()))


@app.command("export")
def export(
    kb: KbArg, target: Annotated[Path, typer.Argument(metavar="FILE.zip")], as_json: JsonFlag = False
) -> None:
    """Write the KB (chunks, vectors, settings) to one archive."""
    from stratum.knowledge.archive import export_kb

    with _knowledge() as (db, service):
        found = service.resolve(kb)
        manifest = export_kb(db, found, target)
    if as_json:
        print_json(manifest)
        return
    typer.echo(
        f"exported {found.ref}: {manifest['documents']} documents, {manifest['chunks']} chunks -> {target}"
    )


@app.command("import")
def import_(
    archive: Annotated[Path, typer.Argument(metavar="FILE.zip", exists=True, dir_okay=False)],
    project: Annotated[str, typer.Option("--project", "-p", metavar="ORG/PROJECT")],
    name: Annotated[
        str | None, typer.Option("--name", help="Name in this project (default: the archive's).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a KB from an archive written by `stratum kb export`."""
    from stratum.knowledge.archive import import_kb

    with _knowledge() as (db, service):
        kb = import_kb(db, service, archive, project=project, name=name)
    if as_json:
        print_json(kb.model_dump(mode="json"))
        return
    print_fields(_summary(kb), title="knowledge base imported")
