"""``stratum db add|list|remove|ask``: database connections for LLM + database QA (text-to-SQL).

    stratum db add acme/sales sales --url sqlite:///sales.db --model qwen \\
        --table orders=id,地区,amount --table customers --filter "viewer:orders=地区 = '华东'"
    stratum db ask acme/sales sales "每个地区的销售额？"        # through the gateway (model db/sales)
    stratum db ask acme/sales sales --sql "SELECT ..." --role viewer   # checked SQL, no model

``add``/``list``/``remove`` and ``ask --sql`` work on the store directly, like the other admin
commands; a question goes to the running gateway's ``/v1/chat/completions`` with a key of the
project (``--api-key`` or ``STRATUM_API_KEY``), exactly as an application would ask.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stratum.cli.output import CliError, print_json, print_table
from stratum.cli.store import cli_actor, open_database
from stratum.settings import Settings

if TYPE_CHECKING:
    from stratum.knowledge.sql.service import DatabaseService

app = typer.Typer(help="Databases for LLM + database QA (model 'db/NAME').", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Project = Annotated[str, typer.Argument(help="ORG/PROJECT the database belongs to.")]
Name = Annotated[str, typer.Argument(help="The database's name (served as model db/NAME).")]


@contextmanager
def _service() -> Iterator[tuple[DatabaseService, Any]]:
    from stratum.governance.tenancy import TenancyService
    from stratum.knowledge.sql.service import DatabaseService

    settings = Settings()
    with open_database(settings) as db:
        yield DatabaseService(db, settings), TenancyService(db)


def _project(tenancy: Any, path: str) -> tuple[str, str]:
    found = tenancy.get_project(path)
    return found.id, found.path


def _tables(values: list[str]) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for value in values:
        table, _, columns = value.partition("=")
        if not table.strip():
            raise CliError(f"--table takes TABLE or TABLE=COL,COL, got {value!r}", exit_code=2)
        tables[table.strip()] = [c.strip() for c in columns.split(",") if c.strip()] or ["*"]
    return tables


def _filters(values: list[str]) -> dict[str, dict[str, str]]:
    filters: dict[str, dict[str, str]] = {}
    for value in values:
        head, eq, condition = value.partition("=")
        role, colon, table = head.partition(":")
        if not (eq and colon and role.strip() and table.strip() and condition.strip()):
            raise CliError(f"--filter takes ROLE:TABLE=CONDITION, got {value!r}", exit_code=2)
        filters.setdefault(role.strip(), {})[table.strip()] = condition.strip()
    return filters


@app.command("add")
def add(
    project: Project,
    name: Name,
    url: Annotated[str, typer.Option("--url", help="sqlite:///path.db or postgresql://user:pass@host/db")],
    model: Annotated[str, typer.Option("--model", help="The model that writes the SQL.")],
    table: Annotated[list[str], typer.Option("--table", help="Allowed TABLE or TABLE=COL,COL (repeat).")],
    row_filter: Annotated[
        list[str] | None,
        typer.Option("--filter", help="Row filter ROLE:TABLE=CONDITION (repeat; role * = all)."),
    ] = None,
    describe: Annotated[
        list[str] | None, typer.Option("--describe", help="TABLE[.COLUMN]=TEXT shown to the model (repeat).")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    max_rows: Annotated[int | None, typer.Option("--max-rows", min=1)] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.01, help="Seconds per query.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a database; its URL is stored encrypted (see STRATUM_SECRET_KEY)."""
    from pydantic import ValidationError

    from stratum.knowledge.sql.schemas import DatabaseCreate

    descriptions = {}
    for item in describe or []:
        key, eq, text = item.partition("=")
        if not eq:
            raise CliError(f"--describe takes TABLE[.COLUMN]=TEXT, got {item!r}", exit_code=2)
        descriptions[key.strip()] = text.strip()
    try:
        spec = DatabaseCreate(
            name=name,
            url=url,
            model=model,
            tables=_tables(table),
            row_filters=_filters(row_filter or []),
            descriptions=descriptions,
            description=description,
            max_rows=max_rows,
            timeout_s=timeout,
        )
    except ValidationError as exc:
        raise CliError(str(exc.errors()[0]["msg"]), exit_code=2) from exc
    with _service() as (service, tenancy):
        project_id, path = _project(tenancy, project)
        shown = service.add(project_id=project_id, project_path=path, spec=spec, actor=cli_actor())
    if as_json:
        print_json(shown.model_dump(mode="json"))
    else:
        typer.echo(f"registered {path}/{shown.name} ({shown.url}); ask it with model db/{shown.name}")


@app.command("list")
def list_databases(project: Project, as_json: JsonFlag = False) -> None:
    """Databases of a project."""
    with _service() as (service, tenancy):
        project_id, path = _project(tenancy, project)
        found = service.list_databases(project_id=project_id, project_path=path)
    if as_json:
        print_json([d.model_dump(mode="json") for d in found])
        return
    rows = [
        {
            "name": d.name,
            "url": d.url,
            "model": d.model,
            "tables": ", ".join(d.tables),
            "max_rows": d.max_rows,
        }
        for d in found
    ]
    print_table(rows, ("name", "url", "model", "tables", "max_rows"), title=path, empty="no databases")


@app.command("remove")
def remove(project: Project, name: Name) -> None:
    """Forget a database (the database itself is not touched)."""
    with _service() as (service, tenancy):
        project_id, path = _project(tenancy, project)
        service.remove(project_id=project_id, project_path=path, name=name, actor=cli_actor())
    typer.echo(f"removed {path}/{name}")


@app.command("ask")
def ask(
    project: Project,
    name: Name,
    question: Annotated[str | None, typer.Argument(help="A question for the database's model.")] = None,
    sql: Annotated[str | None, typer.Option("--sql", help="Run this SQL through the guard instead.")] = None,
    role: Annotated[str, typer.Option("--role", help="Whose row filters apply to --sql.")] = "developer",
    base_url: Annotated[str | None, typer.Option("--base-url", help="The gateway's /v1 URL.")] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="STRATUM_API_KEY", help="A key of the project.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Ask a question (through the gateway) or run checked SQL; prints the SQL and the result."""
    from stratum.knowledge.sql.qa import answer_text
    from stratum.knowledge.sql.schemas import SQLAnswer

    if (question is None) == (sql is None):
        raise CliError("give either a QUESTION or --sql", exit_code=2)
    if sql is not None:
        with _service() as (service, tenancy):
            project_id, path = _project(tenancy, project)
            conn = service.connection(project_id=project_id, project_path=path, name=name)
            answer = service.run(conn, sql, role=role)
    else:
        answer = _ask_gateway(name, question or "", base_url=base_url, api_key=api_key)
    if as_json:
        print_json(answer.model_dump(mode="json"))
    else:
        typer.echo(answer_text(SQLAnswer.model_validate(answer.model_dump())))


def _ask_gateway(name: str, question: str, *, base_url: str | None, api_key: str | None) -> Any:
    import httpx

    from stratum.cli.chat import default_base_url
    from stratum.knowledge.sql.schemas import SQLAnswer

    if not api_key:
        raise CliError("questions go through the gateway: pass --api-key or set STRATUM_API_KEY", exit_code=2)
    settings = Settings()
    url = (base_url or default_base_url(settings)).rstrip("/") + "/chat/completions"
    body = {"model": f"db/{name}", "messages": [{"role": "user", "content": question}]}
    try:
        response = httpx.post(
            url, json=body, headers={"authorization": f"Bearer {api_key}"}, timeout=settings.request_timeout
        )
    except httpx.TransportError as exc:
        raise CliError(f"cannot reach the gateway at {url}: {exc}") from exc
    try:
        payload = response.json()
    except json.JSONDecodeError as exc:
        raise CliError(f"the gateway answered {response.status_code} without JSON") from exc
    if response.status_code != 200:
        raise CliError(payload.get("error", {}).get("message") or f"HTTP {response.status_code}")
    return SQLAnswer.model_validate(payload["stratum_sql"])
