"""``stratum data from-feedback``: low-scored gateway feedback → the next version of a chat dataset.

    stratum data from-feedback [--name NAME] [--model NAME[@V]] [--since 7d] [--max-score 0.5]
                               [--prompts FILE.jsonl] [--json]

Corrections become (prompt → corrected answer) rows; a bare thumbs-down becomes a row with the
answer that was judged bad, queued for review (``stratum data review NAME@N``). The gateway keeps
each chat prompt (guard-masked) with its response; ``--prompts`` supplies prompts for feedback given
before it did (one ``{"response_id": ..., "prompt": ... | "messages": [...]}`` a line).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from stratum.cli.data import JsonFlag, Project, print_version
from stratum.cli.output import CliError, print_json, print_note
from stratum.cli.store import cli_actor, open_database
from stratum.settings import Settings


def parse_since(value: str | None) -> datetime | None:
    """``7d`` / ``12h`` / ``30m`` (ago) or an ISO date or time (UTC when no zone is given)."""
    if value is None:
        return None
    from stratum.errors import InvalidRequest
    from stratum.evals.schedule import parse_every

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_every(value))
    except InvalidRequest:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CliError(
            f"--since takes 7d, 12h, 30m or an ISO date/time; got {value!r}", exit_code=2
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def from_feedback(
    name: Annotated[str, typer.Option("--name", help="Dataset to add a version to.")] = "feedback",
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME[@V]", help="Only feedback on this model/version.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Feedback from: 7d, 12h or an ISO date.")
    ] = None,
    max_score: Annotated[
        float,
        typer.Option("--max-score", min=0.0, max=1.0, help="Scores up to this count (thumbs down = 0)."),
    ] = 0.5,
    prompts: Annotated[
        Path | None,
        typer.Option("--prompts", help="JSONL of {response_id, prompt | messages} for older feedback."),
    ] = None,
    project: Project = None,
    as_json: JsonFlag = False,
) -> None:
    """Build a chat dataset version from low-scored feedback (corrections as answers; bare
    thumbs-down queued for review), linked to the feedback in the lineage graph."""
    from stratum.cli.eval_schedule import read_prompts
    from stratum.data import DatasetService
    from stratum.data import feedback as feedback_data
    from stratum.registry.feedback import FeedbackService

    known = read_prompts(prompts) if prompts is not None else None
    first = parse_since(since)
    settings = Settings()
    with open_database(settings) as db:
        made = feedback_data.build(
            DatasetService(db, settings),
            FeedbackService(db),
            name=name,
            model=model,
            since=first,
            max_score=max_score,
            prompts=known,
            project=project,
            source="stratum data from-feedback",
            actor=cli_actor(),
        )
    if made.version is None:
        raise CliError(f"{made.nothing_built()}; pass --prompts for feedback older than prompt keeping")
    if as_json:
        print_json(made.model_dump(mode="json"))
        return
    print_version(made.version, title=f"from feedback → {made.version.ref}")
    print_note(
        f"{made.corrections} correction(s), {made.review} queued for review, "
        f"{made.missing_prompt} without a prompt, {made.missing_answer} without an answer"
    )
    if made.review:
        print_note(f"review them with: stratum data review {made.version.ref}")
