"""``stratum orgs …`` and ``stratum projects …``: organisations and their projects, with limits.

Written straight into the platform's store: a running gateway applies new limits from the next
request (keys and limits are read per request).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from stratum.cli.output import CliError, print_fields, print_json, print_table
from stratum.cli.store import cli_actor, tenancy_service

orgs_app = typer.Typer(help="Organisations (tenants).", no_args_is_help=True)
projects_app = typer.Typer(help="Projects of an organisation, with their limits.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Rpm = Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute.")]
Tpm = Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens (prompt + completion) per minute.")]
TokenBudget = Annotated[
    int | None, typer.Option("--token-budget", min=1, help="Tokens per calendar month (UTC).")
]

_PROJECT_COLUMNS = ("path", "rpm", "tpm", "token_budget", "cost_budget", "created_at")


@orgs_app.command("create")
def create_org(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Organisation name (no spaces, '/', ':' or '@').")
    ],
    rpm: Rpm = None,
    tpm: Tpm = None,
    token_budget: TokenBudget = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an organisation."""
    from stratum.governance.schemas import OrgCreate

    spec = OrgCreate(name=name, rpm=rpm, tpm=tpm, token_budget=token_budget)
    with tenancy_service() as tenancy:
        org = tenancy.create_org(spec, actor=cli_actor())
    if as_json:
        print_json(org.model_dump(mode="json"))
        return
    print_fields(org.model_dump(), title="organisation created")


@orgs_app.command("list")
def list_orgs(as_json: JsonFlag = False) -> None:
    """List organisations."""
    with tenancy_service() as tenancy:
        orgs = tenancy.list_orgs()
    if as_json:
        print_json([org.model_dump(mode="json") for org in orgs])
        return
    print_table(
        [org.model_dump() for org in orgs],
        ("name", "id", "rpm", "tpm", "token_budget", "created_at"),
        empty="no organisations yet; create one with `stratum orgs create NAME`",
    )


def _money(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise CliError(f"--cost-budget takes an amount such as 250 or 99.50, got {value!r}") from exc
    return amount


@projects_app.command("create")
def create_project(
    path: Annotated[
        str, typer.Argument(metavar="ORG/PROJECT", help="The organisation and the new project's name.")
    ],
    token_budget: TokenBudget = None,
    cost_budget: Annotated[
        str | None, typer.Option("--cost-budget", metavar="AMOUNT", help="Money per calendar month.")
    ] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a project in an organisation, optionally with limits."""
    from stratum.governance.schemas import ProjectCreate
    from stratum.governance.tenancy import split_path

    org, name = split_path(path)
    spec = ProjectCreate(
        name=name, rpm=rpm, tpm=tpm, token_budget=token_budget, cost_budget=_money(cost_budget)
    )
    with tenancy_service() as tenancy:
        project = tenancy.create_project(org, spec, actor=cli_actor())
    if as_json:
        print_json(project.model_dump(mode="json"))
        return
    print_fields({k: project.model_dump()[k] for k in ("id", *_PROJECT_COLUMNS)}, title="project created")


@projects_app.command("list")
def list_projects(
    org: Annotated[str, typer.Argument(metavar="ORG", help="The organisation.")], as_json: JsonFlag = False
) -> None:
    """List an organisation's projects and their limits."""
    with tenancy_service() as tenancy:
        projects = tenancy.list_projects(org)
    if as_json:
        print_json([project.model_dump(mode="json") for project in projects])
        return
    print_table([p.model_dump() for p in projects], _PROJECT_COLUMNS, empty=f"{org} has no projects yet")


@projects_app.command("limits")
def set_limits(
    path: Annotated[str, typer.Argument(metavar="ORG/PROJECT")],
    token_budget: TokenBudget = None,
    cost_budget: Annotated[str | None, typer.Option("--cost-budget", metavar="AMOUNT")] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a project's limits (options left out keep their value); applies from the next request."""
    from stratum.governance.schemas import LimitsUpdate

    sent = {"token_budget": token_budget, "cost_budget": _money(cost_budget), "rpm": rpm, "tpm": tpm}
    update = LimitsUpdate.model_validate({k: v for k, v in sent.items() if v is not None})
    with tenancy_service() as tenancy:
        project = tenancy.set_project_limits(path, update, actor=cli_actor())
    if as_json:
        print_json(project.model_dump(mode="json"))
        return
    print_fields({k: project.model_dump()[k] for k in _PROJECT_COLUMNS}, title="limits updated")
