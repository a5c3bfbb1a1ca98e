"""``stratum kb ingest``'s two ways: here with a progress bar (the default), or queued as a
``kb_ingest`` job for a worker (``--background``)."""

from __future__ import annotations

from pathlib import Path

import typer

from stratum.cli.kb import _encoder, _knowledge
from stratum.cli.output import CliError, print_fields, print_json


def ingest_background(
    kb: str, paths: list[Path], urls: list[str], tags: list[str], batch_size: int, as_json: bool
) -> None:
    from stratum.jobs.service import JobService
    from stratum.knowledge import ingest_job
    from stratum.settings import Settings

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CliError(f"no such file or folder: {', '.join(missing)}")
    with _knowledge() as (db, service):
        found = service.resolve(kb)
        jobs = JobService(db, jobs_dir=Settings().jobs_dir)
        ingest_job.check_idle(jobs, found)
        job = ingest_job.submit(
            jobs,
            found,
            server_paths=[str(p.resolve()) for p in paths],
            urls=urls,
            tags=tags,
            actor="cli",
            batch_size=batch_size,
        )
    if as_json:
        print_json(job.model_dump(mode="json"))
        return
    typer.echo(f"queued job {job.id} (kb_ingest into {found.ref}); follow it: stratum jobs show {job.id}")


def ingest_here(
    kb: str, paths: list[Path], urls: list[str], tags: list[str], batch_size: int, as_json: bool
) -> None:
    import tempfile

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from stratum.knowledge.schemas import IngestProgress
    from stratum.knowledge.web import FetchedPage, fetch_pages
    from stratum.settings import Settings

    with _knowledge() as (db, service), tempfile.TemporaryDirectory(prefix="stratum-pages-") as scratch:
        found = service.resolve(kb)
        failed: list[str] = []
        pages: list[FetchedPage] = []
        if urls:
            settings = Settings()
            # The operator runs this: loopback and private addresses are allowed here.
            pages, failed = fetch_pages(
                urls,
                Path(scratch),
                timeout=settings.kb_fetch_timeout,
                max_bytes=settings.kb_fetch_max_bytes,
                allow_private=True,
            )
        encoder = _encoder(db, found.settings.embedding_model)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("files · {task.fields[chunks]} chunks · {task.fields[current]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False, disable=as_json) as bar:
            task = bar.add_task(f"ingest {found.name}", total=None, chunks=0, current="")
            seen = {"files": 0}

            def show(state: IngestProgress) -> None:
                bar.update(
                    task,
                    total=state.files_total,
                    completed=state.files_done,
                    chunks=state.chunks_done,
                    current=state.current or "",
                )
                if state.files_done > seen["files"] and not as_json:
                    seen["files"] = state.files_done
                    bar.console.print(
                        f"  {state.files_done}/{state.files_total} files, {state.chunks_done} chunks"
                    )

            result = service.ingest(
                found,
                [*paths, *(page.path for page in pages)],
                encoder=encoder,
                tags=tags,
                progress=show,
                batch_size=batch_size,
                sources={page.path: page.url for page in pages},
                failed=failed,
            )
    if as_json:
        print_json(result.summary())
    else:
        rate = result.chunks_done - result.chunks_resumed
        print_fields(
            {
                "files": result.files_total,
                "skipped (unchanged)": result.files_skipped,
                "failed": result.files_failed,
                "chunks": result.chunks_done,
                "resumed chunks": result.chunks_resumed,
                "pages": result.pages_done,
                "seconds": round(result.elapsed_s, 1),
                "chunks/s": round(rate / result.elapsed_s, 2) if result.elapsed_s else 0,
            },
            title=f"ingested into {found.ref}",
        )
        for error in result.errors:
            typer.echo(f"warning: {error}", err=True)
    if result.files_failed:
        raise typer.Exit(1)
