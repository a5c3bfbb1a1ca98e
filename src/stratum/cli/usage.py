"""``stratum usage ORG/PROJECT``: requests, tokens and cost of a project, by model, key or day."""

from __future__ import annotations

import csv
import sys
from enum import StrEnum
from typing import Annotated

import typer

from stratum.cli.output import CliError, print_json, print_table
from stratum.cli.store import usage_service


class By(StrEnum):
    model = "model"
    key = "key"
    day = "day"


def usage(
    path: Annotated[str, typer.Argument(metavar="ORG/PROJECT", help="The project to report on.")],
    since: Annotated[
        str | None, typer.Option("--since", help="First UTC day: YYYY-MM-DD, or Nd for the last N days.")
    ] = None,
    by: Annotated[By, typer.Option("--by", help="Group by model, key or UTC day.")] = By.model,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print CSV (one line per group, then the total).")
    ] = False,
) -> None:
    """Show a project's usage: requests, prompt and completion tokens, and cost."""
    from stratum.governance.usage import since_date

    try:
        first_day = since_date(since)
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from exc
    with usage_service() as service:
        report = service.report(path, by=by.value, since=first_day)
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    rows = [line.model_dump() for line in [*report.lines, report.total]] if report.lines else []
    columns = ("group", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost")
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([by.value if c == "group" else c for c in columns])
        writer.writerows([row[c] for c in columns] for row in rows)
        return
    print_table(
        rows,
        columns,
        headers={"group": by.value},
        title=f"usage of {report.project}" + (f" since {first_day}" if first_day else ""),
        empty=f"no usage recorded for {path}" + (f" since {first_day}" if first_day else ""),
    )
