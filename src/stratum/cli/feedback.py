"""``stratum feedback list``: user feedback with the version that served each answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from stratum.cli.output import CliError, abridge, print_json, print_table
from stratum.cli.store import open_database

app = typer.Typer(help="User feedback on responses (POST /v1/feedback).", no_args_is_help=True)
# Characters of a correction `feedback list` shows; --json has all of it.
_CORRECTION_WIDTH = 40


@app.command("list")
def list_feedback(
    model: Annotated[
        str | None, typer.Option("--model", help="NAME (every version) or NAME@VERSION.")
    ] = None,
    max_score: Annotated[
        float | None, typer.Option("--max-score", min=0, max=1, help="Only scores at or below this (0-1).")
    ] = None,
    with_correction: Annotated[
        bool, typer.Option("--with-correction", help="Only feedback with a correction.")
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="From this ISO date or time (UTC if no zone).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, oldest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List feedback, e.g. low-scored answers with their corrections for a fine-tuning set."""
    from stratum.registry.feedback import FeedbackService

    first = None
    if since is not None:
        try:
            first = datetime.fromisoformat(since)
        except ValueError as exc:
            raise CliError(f"--since takes an ISO date or time; got {since!r}", exit_code=2) from exc
        first = first if first.tzinfo else first.replace(tzinfo=UTC)
    with open_database() as db:
        found = FeedbackService(db).list_feedback(
            model_ref=model, since=first, max_score=max_score, with_correction=with_correction, limit=limit
        )
    if as_json:
        print_json([f.model_dump(mode="json") for f in found])
        return
    rows = [
        {
            "id": f.id,
            "at": f.created_at,
            "version": f.version_ref,
            "score": f"{f.score:g}",
            "response": f.response_id,
            "correction": abridge(f.correction, _CORRECTION_WIDTH),
        }
        for f in found
    ]
    print_table(rows, ("id", "at", "version", "score", "response", "correction"), empty="no feedback")
