"""``stratum data …``: datasets — import, list, show, diff, export, transform, label, review.

    stratum data import FILE [--name N] [--format auto|chat|instruction|preference] [--skip-invalid]
    stratum data list | show DATASET[@V] | diff A B | export DATASET[@V] OUT.(jsonl|csv|parquet)
    stratum data steps                                   the transform steps and their parameters
    stratum data transform DATASET[@V] --steps clean,dedup,split [--params dedup.threshold=0.9]
    stratum data label DATASET[@V] --rules rules.json [--threshold 0.8]
    stratum data review DATASET@V [--decisions decisions.jsonl]

A dataset is addressed as ``NAME``, ``NAME@N``, ``NAME@latest`` or ``NAME@<hash prefix>``; with
``--project ORG/PROJECT`` (or an ``ORG/PROJECT/NAME`` ref) it is that project's dataset. Every
transform step, review and import makes a new immutable version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stratum.cli.output import CliError, print_fields, print_json, print_note, print_table
from stratum.cli.store import cli_actor, open_database
from stratum.settings import Settings

if TYPE_CHECKING:
    from stratum.data import DatasetService, DatasetVersion

app = typer.Typer(help="Datasets: import, versions, transforms, review.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Project = Annotated[
    str | None, typer.Option("--project", metavar="ORG/PROJECT", help="The project owning the dataset.")
]
Ref = Annotated[str, typer.Argument(metavar="DATASET[@V]", help="NAME, NAME@N, NAME@latest or NAME@<hash>.")]


@contextmanager
def dataset_service() -> Iterator[DatasetService]:
    from stratum.data import DatasetService

    settings = Settings()
    with open_database(settings) as db:
        yield DatasetService(db, settings)


def print_version(version: DatasetVersion, *, title: str) -> None:
    report = version.report
    dropped = ", ".join(f"{reason} {count}" for reason, count in report.get("dropped", {}).items())
    fields: dict[str, Any] = {
        "ref": version.ref,
        "format": version.format,
        "rows": version.row_count,
        "parent": version.parent,
        "transform": f"{version.transform.name} {json.dumps(version.transform.params, ensure_ascii=False)}",
        "rows in → out": f"{report.get('rows_in')} → {report.get('rows_out')}",
        "dropped": dropped or None,
        "changed": report.get("changed") or None,
        "added": report.get("added") or None,
        "splits": version.splits or None,
        "content hash": version.content_hash,
        "created": version.created_at,
    }
    print_fields({k: v for k, v in fields.items() if v is not None}, title=title)
    for example in report.get("examples", [])[:5]:
        text = example["text"][:80].replace("\n", " ⏎ ")
        print_note(f"  row {example['index']}: {example['reason']} — {text}")


@app.command("import")
def import_dataset(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A .jsonl, .csv or .parquet file.")],
    name: Annotated[str | None, typer.Option("--name", help="Dataset name (default: the file name).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto, chat, instruction or preference.")] = "auto",
    project: Project = None,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Import the valid rows; list the invalid ones in the report."),
    ] = False,
    description: Annotated[str | None, typer.Option("--description")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a file and import it as a new version (a new dataset, or the next version of NAME)."""
    with dataset_service() as datasets:
        version = datasets.import_file(
            file,
            name=name,
            fmt=fmt,
            project=project,
            skip_invalid=skip_invalid,
            description=description,
            actor=cli_actor(),
        )
    if as_json:
        print_json(version.model_dump(mode="json"))
        return
    print_version(version, title="imported")


@app.command("list")
def list_datasets(
    project: Project = None,
    everything: Annotated[bool, typer.Option("--all", help="Datasets of every project.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List datasets (platform datasets, or a project's with --project, or all with --all)."""
    with dataset_service() as datasets:
        found = datasets.list_datasets(project=project, everything=everything)
    if as_json:
        print_json([d.model_dump(mode="json", exclude={"versions"}) for d in found])
        return
    print_table(
        [d.model_dump() for d in found],
        ("name", "project", "format", "latest", "created_at"),
        empty="no datasets yet; import one with `stratum data import FILE`",
    )


@app.command("show")
def show(ref: Ref, project: Project = None, as_json: JsonFlag = False) -> None:
    """A dataset and its versions, or (with @V) one version with its transform and report."""
    with dataset_service() as datasets:
        if "@" in ref:
            version = datasets.get(ref, project=project)
            if as_json:
                print_json(version.model_dump(mode="json"))
            else:
                print_version(version, title=version.ref)
            return
        dataset = datasets.show(ref, project=project)
    if as_json:
        print_json(dataset.model_dump(mode="json"))
        return
    rows = [
        {
            "version": v.number,
            "rows": v.row_count,
            "transform": v.transform.name,
            "parent": v.parent,
            "dropped": sum(v.report.get("dropped", {}).values()) or None,
            "hash": v.content_hash[:12],
            "created_at": v.created_at,
        }
        for v in dataset.versions
    ]
    title = f"{dataset.project + '/' if dataset.project else ''}{dataset.name} ({dataset.format})"
    print_table(
        rows, ("version", "rows", "transform", "parent", "dropped", "hash", "created_at"), title=title
    )


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="DATASET@V")],
    b: Annotated[str, typer.Argument(metavar="B", help="DATASET@V, or @V for another version of A.")],
    project: Project = None,
    as_json: JsonFlag = False,
) -> None:
    """Rows removed and added between two versions (compared by content, order ignored)."""
    if b.startswith("@"):
        b = a.split("@", 1)[0] + b
    with dataset_service() as datasets:
        result = datasets.diff(a, b, project=project)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    typer.echo(f"{result.a} ({result.rows_a} rows) → {result.b} ({result.rows_b} rows)")
    typer.echo(f"  common {result.common}, removed {result.removed}, added {result.added}")
    for sign, examples in (("-", result.removed_examples), ("+", result.added_examples)):
        for row in examples:
            typer.echo(f"{sign} {json.dumps(row, ensure_ascii=False)}")


@app.command("export")
def export(
    ref: Ref,
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Target .jsonl, .csv or .parquet file.")],
    split: Annotated[str | None, typer.Option("--split", help="Only rows of this split.")] = None,
    project: Project = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a version's rows to a file."""
    with dataset_service() as datasets:
        version = datasets.get(ref, project=project)
        count = datasets.export(version.ref, output, split=split)
    if as_json:
        print_json({"ref": version.ref, "rows": count, "output": str(output)})
        return
    typer.echo(f"wrote {count} rows of {version.ref} to {output}")


def parse_params(values: list[str]) -> dict[str, dict[str, Any]]:
    """``--params`` values: ``STEP.NAME=VALUE`` (VALUE parsed as JSON when it is JSON) or a JSON object
    ``{"STEP": {"NAME": VALUE}}``."""
    params: dict[str, dict[str, Any]] = {}
    for value in values:
        if value.lstrip().startswith("{"):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise CliError(f"--params: not valid JSON: {exc.msg}", exit_code=2) from exc
            if not all(isinstance(v, dict) for v in parsed.values()):
                raise CliError('--params JSON is {"STEP": {"NAME": VALUE}}', exit_code=2)
            for step, step_params in parsed.items():
                params.setdefault(step, {}).update(step_params)
            continue
        key, eq, raw = value.partition("=")
        step, dot, name = key.partition(".")
        if not eq or not dot or not step or not name:
            raise CliError(f"--params takes STEP.NAME=VALUE, got {value!r}", exit_code=2)
        try:
            parsed_value: Any = json.loads(raw)
        except json.JSONDecodeError:
            parsed_value = raw
        params.setdefault(step, {})[name] = parsed_value
    return params


@app.command("steps")
def steps(as_json: JsonFlag = False) -> None:
    """The transform steps, their version and default parameters."""
    from stratum.data.transforms import available_steps

    found = available_steps()
    rows = [
        {"step": s.name, "version": s.version, "params": s.params, "does": s.help} for s in found.values()
    ]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ("step", "version", "params", "does"))


@app.command("transform")
def transform(
    ref: Ref,
    step_list: Annotated[
        str,
        typer.Option("--steps", help="Comma-separated steps, applied in order (see `stratum data steps`)."),
    ],
    params: Annotated[
        list[str] | None,
        typer.Option("--params", help="STEP.NAME=VALUE or a JSON object {STEP: {NAME: VALUE}}; repeatable."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="backtranslate: the gateway's /v1 URL (key from STRATUM_API_KEY)."),
    ] = None,
    project: Project = None,
    as_json: JsonFlag = False,
) -> None:
    """Apply transform steps; each step makes a new version with a report."""
    from stratum.cli.chat import default_base_url
    from stratum.data.transforms import TransformService
    from stratum.engine.upstream import UpstreamEngine

    names = [s.strip() for s in step_list.split(",") if s.strip()]
    if not names:
        raise CliError("--steps needs at least one step", exit_code=2)
    settings = Settings()
    url = base_url or default_base_url(settings)

    def engine_for(model: str) -> UpstreamEngine:
        # Through the gateway: any model it serves (embedded or upstream) can paraphrase.
        return UpstreamEngine(
            url, model=model, api_key_env="STRATUM_API_KEY", timeout=settings.request_timeout
        )

    from rich.console import Console

    with dataset_service() as datasets, Console(stderr=True).status("transforming") as status:
        made = TransformService(datasets, engine_for=engine_for).run(
            ref,
            names,
            parse_params(params or []),
            project=project,
            actor=cli_actor(),
            on_step=lambda i, n, name: status.update(f"step {i}/{n}: {name}"),
        )
    if as_json:
        print_json([v.model_dump(mode="json") for v in made])
        return
    for version in made:
        print_version(version, title=f"{version.transform.name} → {version.ref}")


def register_review_commands() -> None:
    from stratum.cli import data_feedback, data_review

    app.command("label")(data_review.label)
    app.command("review")(data_review.review)
    app.command("from-feedback")(data_feedback.from_feedback)


register_review_commands()
