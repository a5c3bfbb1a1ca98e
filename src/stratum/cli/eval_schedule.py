"""``stratum eval schedule add|list|run-due|remove``: re-evaluate production aliases on a schedule.

``run-due`` is what cron (or a systemd timer) calls: it evaluates every due schedule with the version
its alias points to now, flags a drop larger than ``--max-drop`` against the schedule's previous
run, and on a flag builds a backflow dataset from recent low-scored feedback with corrections.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from stratum.cli.output import CliError, print_json, print_table
from stratum.cli.store import cli_actor, open_database

app = typer.Typer(help="Scheduled re-evaluation of production aliases.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _service(db: Any) -> Any:
    from stratum.evals.schedule import ScheduleService
    from stratum.settings import Settings

    return ScheduleService(db, Settings())


@app.command("add")
def add(
    model: Annotated[str, typer.Argument(help="NAME:ALIAS, resolved at each run (e.g. bot:prod).")],
    suite: Annotated[Path | None, typer.Option("--suite", help="A JSONL suite file.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="A dataset version (NAME@V).")] = None,
    split: Annotated[
        str, typer.Option("--split", help="With --dataset: the split ('all': every row).")
    ] = "test",
    every: Annotated[str, typer.Option("--every", help="Interval: 90s, 30m, 12h, 7d, 2w.")] = "7d",
    metric: Annotated[str, typer.Option("--metric", help="The metric watched.")] = "f1",
    max_drop: Annotated[float, typer.Option("--max-drop", help="Largest allowed relative drop.")] = 0.03,
    backflow: Annotated[
        bool,
        typer.Option(
            "--backflow/--no-backflow", help="On a flagged drop, build a dataset from low-scored feedback."
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Re-evaluate MODEL every --every; the first run is due at once (workers queue due runs)."""
    if suite is not None and not suite.is_file():
        raise CliError(f"suite file {suite} does not exist")
    with open_database() as db:
        made = _service(db).add(
            model=model,
            suite_path=str(suite.resolve()) if suite is not None else None,
            dataset_ref=dataset,
            split=None if split == "all" else split,
            every=every,
            metric=metric,
            max_drop=max_drop,
            backflow=backflow,
            actor=cli_actor(),
        )
    if as_json:
        print_json(made.model_dump(mode="json"))
    else:
        typer.echo(f"schedule {made.id}: {made.model} every {every}, {metric} max drop {max_drop:.1%}")


@app.command("list")
def list_schedules(as_json: JsonOption = False) -> None:
    """Schedules with their last run and flag."""
    with open_database() as db:
        schedules = _service(db).list()
    if as_json:
        print_json([s.model_dump(mode="json") for s in schedules])
        return
    rows = [
        {
            **s.model_dump(),
            "suite": s.dataset_ref or Path(s.suite_path or "").name,
            "flag": ("FLAGGED: " + (s.flag_reason or "")) if s.flagged else "ok",
        }
        for s in schedules
    ]
    print_table(
        rows,
        [
            "id",
            "model",
            "suite",
            "metric",
            "max_drop",
            "next_due_at",
            "last_run_id",
            "flag",
            "backflow",
            "backflow_dataset",
        ],
        empty="no eval schedules",
    )


@app.command("remove")
def remove(schedule_id: Annotated[int, typer.Argument(help="Schedule id.")]) -> None:
    """Delete a schedule (its runs stay)."""
    with open_database() as db:
        _service(db).remove(schedule_id, actor=cli_actor())
    typer.echo(f"removed schedule {schedule_id}")


@app.command("run-due")
def run_due(
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="JSONL of {response_id, prompt | messages}: the prompts behind feedback, for backflow "
            "(the gateway does not store prompts).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate every due schedule; exits 1 when any of them was flagged (so cron can alert)."""
    known = read_prompts(prompts) if prompts is not None else {}
    with open_database() as db:
        outcomes = _service(db).run_due(prompts=known, actor=cli_actor())
    if as_json:
        print_json([o.model_dump(mode="json") for o in outcomes])
    else:
        rows = [
            {
                "schedule": o.schedule.id,
                "version": o.run.model_ref,
                "run": o.run.id,
                "previous": "-" if o.previous is None else f"{o.previous:.4f}",
                "current": f"{o.current:.4f}",
                "drop": "-" if o.drop is None else f"{o.drop:.1%}",
                "flag": "FLAGGED" if o.flagged else "ok",
                "backflow": f"{o.backflow_rows} rows, {o.missing_prompt} without prompt" if o.flagged else "",
            }
            for o in outcomes
        ]
        print_table(
            rows,
            ["schedule", "version", "run", "previous", "current", "drop", "flag", "backflow"],
            empty="no schedule is due",
        )
    if any(o.flagged for o in outcomes):
        raise typer.Exit(1)


def read_prompts(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CliError(f"prompts file {path} does not exist")
    found: dict[str, Any] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise CliError(f"{path.name} line {number}: not JSON ({error.msg})") from None
        prompt = row.get("messages", row.get("prompt")) if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("response_id"), str) or not prompt:
            raise CliError(f"{path.name} line {number}: expected response_id and prompt (or messages)")
        found[row["response_id"]] = prompt
    return found
