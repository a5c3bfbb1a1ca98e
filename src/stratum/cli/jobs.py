"""``stratum jobs …`` and ``stratum worker``: the job queue from the terminal.

    stratum jobs submit sft --config job.yaml [--project ORG/PROJECT] [--priority N] [--cpu-threads N]
    stratum jobs list [--project ORG/PROJECT] [--status S]     stratum jobs show ID
    stratum jobs logs ID [--follow] [--tail N]                  stratum jobs cancel ID | retry ID
    stratum worker                                              run a worker until Ctrl-C

Written straight into the platform's store, like every other command: a running worker (``stratum
serve`` starts one) picks a submitted job up within a second.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stratum.cli.output import CliError, print_fields, print_json, print_note, print_table
from stratum.cli.store import cli_actor, open_database
from stratum.settings import Settings

if TYPE_CHECKING:
    from stratum.jobs.schemas import JobPublic
    from stratum.jobs.service import JobService

app = typer.Typer(
    help="Jobs: fine-tuning and other long work, queued and run by workers.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
JobId = Annotated[str, typer.Argument(metavar="ID", help="The job's id (from `stratum jobs list`).")]
_FINISHED = ("succeeded", "failed", "cancelled")
_FOLLOW_POLL_S = 0.5


@contextmanager
def job_service() -> Iterator[JobService]:
    from stratum.jobs.service import JobService

    settings = Settings()
    with open_database(settings) as db:
        yield JobService(db, jobs_dir=settings.jobs_dir)


def load_config(path: Path) -> dict[str, Any]:
    """A job config from YAML (or JSON). Relative ``*_path`` values are taken from the file's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    import yaml

    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a mapping of settings, got {type(data).__name__}")
    for key, value in list(data.items()):
        if key.endswith("_path") and isinstance(value, str) and not Path(value).expanduser().is_absolute():
            data[key] = str((path.parent / value).resolve())
    return data


def _progress(job: JobPublic) -> str:
    progress = job.progress
    if "step" not in progress:
        return ""
    text = f"{progress['step']}/{progress.get('total') or '?'}"
    if progress.get("loss") is not None:
        text += f" loss {progress['loss']:.4f}"
    if progress.get("chunks_done") is not None:  # a kb_ingest job: files step/total, chunks too
        text += f" files, {progress['chunks_done']} chunks"
    if progress.get("eta_s") is not None and job.status == "running":
        text += f" eta {int(progress['eta_s'])}s"
    return text


def _row(job: JobPublic) -> dict[str, Any]:
    return job.model_dump() | {"progress": _progress(job), "attempt": f"{job.attempts}/{job.max_attempts}"}


@app.command("submit")
def submit(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="sft, dpo, eval, sleep …")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML (or JSON) file with the job's settings.")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", metavar="ORG/PROJECT", help="The project the job belongs to.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A label for lists.")] = None,
    priority: Annotated[int, typer.Option("--priority", help="Higher runs first (-1000..1000).")] = 0,
    cpu_threads: Annotated[int, typer.Option("--cpu-threads", min=1, help="CPU threads it needs.")] = 1,
    memory_mb: Annotated[int, typer.Option("--memory-mb", min=1, help="Memory it needs, in MB.")] = 1024,
    gpus: Annotated[int, typer.Option("--gpus", min=0, help="GPUs it needs (GPU pool).")] = 0,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Attempts before failing.")] = 2,
    exclusive_key: Annotated[
        str | None,
        typer.Option("--exclusive-key", help="Refuse the job while a queued or running job holds this key."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Queue a job; a worker starts it when a slot that fits is free."""
    from stratum.jobs.schemas import JobSubmit, Resources

    spec = JobSubmit(
        kind=kind,
        config=load_config(config) if config else {},
        name=name,
        priority=priority,
        resources=Resources(cpu_threads=cpu_threads, memory_mb=memory_mb, gpus=gpus),
        max_attempts=max_attempts,
        exclusive_key=exclusive_key,
    )
    with job_service() as jobs:
        job = jobs.submit(spec, project=project, actor=cli_actor())
    if as_json:
        print_json(job.model_dump(mode="json"))
        return
    typer.echo(f"queued job {job.id} ({job.kind}); follow it with: stratum jobs logs {job.id} --follow")


@app.command("list")
def list_jobs(
    project: Annotated[str | None, typer.Option("--project", metavar="ORG/PROJECT")] = None,
    status: Annotated[str | None, typer.Option("--status", help="queued, running, succeeded …")] = None,
    kind: Annotated[str | None, typer.Option("--kind")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Jobs, newest first."""
    with job_service() as jobs:
        found = jobs.list_jobs(project=project, status=status, kind=kind, limit=limit)
    if as_json:
        print_json([job.model_dump(mode="json") for job in found])
        return
    print_table(
        [_row(job) for job in found],
        ("id", "kind", "name", "status", "project", "priority", "attempt", "progress", "created_at"),
        empty="no jobs; queue one with `stratum jobs submit KIND --config FILE`",
    )


@app.command("show")
def show(job_id: JobId, as_json: JsonFlag = False) -> None:
    """One job: status, resources, progress, metrics, result, last error."""
    with job_service() as jobs:
        job = jobs.get(job_id)
    if as_json:
        print_json(job.model_dump(mode="json"))
        return
    fields = _row(job)
    fields["resources"] = job.resources.model_dump() | {"pool": job.pool}
    keys = ("id", "kind", "name", "status", "project", "priority", "attempt", "resources", "progress")
    more = ("worker_id", "metrics", "result", "error", "created_by", "created_at", "started_at")
    print_fields({key: fields[key] for key in (*keys, *more, "finished_at", "config")})


@app.command("logs")
def logs(
    job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    tail: Annotated[int | None, typer.Option("--tail", min=0, help="Only the last N lines.")] = None,
) -> None:
    """The job's log: every attempt's output, with the worker's notes between attempts."""
    with job_service() as jobs:
        chunk = jobs.logs(job_id, tail=tail)
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
        offset = chunk.offset
        while follow:
            chunk = jobs.logs(job_id, offset=offset)
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
            offset = chunk.offset
            if not chunk.text:
                if jobs.get(job_id).status in _FINISHED and not jobs.logs(job_id, offset=offset).text:
                    break
                time.sleep(_FOLLOW_POLL_S)


@app.command("cancel")
def cancel(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Cancel a job: at once if queued, within a second or two if running."""
    with job_service() as jobs:
        job = jobs.cancel(job_id)
    if as_json:
        print_json(job.model_dump(mode="json"))
    elif job.status == "cancelled":
        typer.echo(f"job {job.id} cancelled")
    else:
        typer.echo(f"job {job.id}: cancel requested; its worker stops it")


@app.command("retry")
def retry(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Queue a failed or cancelled job again (training resumes from its last checkpoint)."""
    with job_service() as jobs:
        job = jobs.retry(job_id)
    if as_json:
        print_json(job.model_dump(mode="json"))
    else:
        typer.echo(f"job {job.id} queued again (attempt {job.attempts + 1} of {job.max_attempts})")


def worker(
    cpu_threads: Annotated[
        int | None, typer.Option("--cpu-threads", min=1, help="Threads offered (STRATUM_WORKER_CPU_THREADS).")
    ] = None,
    memory_mb: Annotated[
        int | None, typer.Option("--memory-mb", min=1, help="Memory offered (STRATUM_WORKER_MEMORY_MB).")
    ] = None,
    gpus: Annotated[
        int | None, typer.Option("--gpus", min=0, help="GPUs offered (STRATUM_WORKER_GPUS).")
    ] = None,
) -> None:
    """Run a job worker until Ctrl-C: each job in its own child process; it also queues the runs
    of due eval schedules (STRATUM_EVAL_SCHEDULE_POLL)."""
    from stratum.evals.trigger import worker_tasks
    from stratum.jobs.worker import run_worker

    overrides = {
        key: value
        for key, value in (
            ("worker_cpu_threads", cpu_threads),
            ("worker_memory_mb", memory_mb),
            ("worker_gpus", gpus),
        )
        if value is not None
    }
    settings = Settings(**overrides)
    settings.home.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print_note(f"job worker on {settings.resolved_database_url.split('@')[-1]}; Ctrl-C stops it")
    run_worker(settings, stop, worker_tasks)
