"""``stratum audit verify|list|prune``: check the hash chain, read entries, prune old ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from stratum.cli.output import CliError, print_json, print_table
from stratum.cli.store import audit_service, cli_actor

app = typer.Typer(
    help="The hash-chained audit log of admin actions and inference requests.", no_args_is_help=True
)


@app.command("verify")
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Walk the hash chain: OK with the entry count, or the first broken entry (exit code 1)."""
    with audit_service() as service:
        result = service.verify()
    if as_json:
        print_json(result.model_dump(mode="json"))
    elif result.ok:
        since = f" since the prune checkpoint at entry {result.checkpoint_id}" if result.checkpoint_id else ""
        typer.echo(f"OK: {result.count} audit entries, chain intact{since}")
    else:
        typer.echo(
            f"BROKEN at entry {result.broken_id}: {result.reason} ({result.count} entries verified before it)"
        )
    if not result.ok:
        raise typer.Exit(1)


def _since(value: str | None) -> datetime | None:
    from stratum.governance.usage import since_date

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            day = since_date(value)
        except ValueError as exc:
            raise CliError(f"--since takes an ISO date or time, or Nd; got {value!r}", exit_code=2) from exc
        assert day is not None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command("list")
def list_entries(
    since: Annotated[
        str | None, typer.Option("--since", help="From: YYYY-MM-DD, an ISO time (UTC if no zone), or Nd.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only entries by this key id or cli:USER.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show audit entries, newest first."""
    first = _since(since)
    with audit_service() as service:
        entries = service.list_entries(since=first, actor=actor, limit=limit)
    if as_json:
        print_json([entry.model_dump(mode="json") for entry in entries])
        return
    rows = [
        {
            "id": e.id,
            "at": e.at.isoformat(timespec="seconds"),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "hash": e.hash[:12],
        }
        for e in entries
    ]
    print_table(
        rows, ("id", "at", "actor", "action", "target", "hash"), title="audit log", empty="no audit entries"
    )


@app.command("prune")
def prune(
    older_than: Annotated[
        int | None,
        typer.Option("--older-than", min=1, help="Days to keep (default: STRATUM_AUDIT_RETENTION_DAYS)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Delete entries older than the retention, behind a checkpoint that keeps `verify` working."""
    from datetime import timedelta

    from stratum.settings import Settings
    from stratum.storage.db import utcnow

    days = older_than if older_than is not None else Settings().audit_retention_days
    if days is None:
        raise CliError("give --older-than DAYS or set STRATUM_AUDIT_RETENTION_DAYS", exit_code=2)
    with audit_service() as service:
        result = service.prune(before=utcnow() - timedelta(days=days), actor=cli_actor())
    if as_json:
        print_json(result.model_dump(mode="json"))
    elif result.pruned:
        typer.echo(f"pruned {result.pruned} audit entries (through entry {result.through_id})")
    else:
        typer.echo(f"nothing older than {days} days to prune")
