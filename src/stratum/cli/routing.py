"""``stratum routes|rules|queue``: routes and fallback chains, responder rules, the hand-off queue.

    stratum routes set assistant --backend tiny --backend cloud,priority=1 --burst-queue 4 \\
        --fallback model:backup --fallback rules --fallback human
    stratum routes list | remove MODEL
    stratum rules set refund --keyword 退款 --keyword refund --template "退款请访问 …"
    stratum rules list | remove NAME
    stratum queue list [--status open|answered|all] | show TICKET | answer TICKET TEXT

Like ``stratum prices``, these write the store the gateway reads; it applies them within a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stratum.cli.output import CliError, print_fields, print_json, print_success, print_table
from stratum.cli.store import cli_actor, open_database

if TYPE_CHECKING:
    from stratum.routing.routes import RouteService
    from stratum.routing.rules import RuleService
    from stratum.routing.tickets import TicketService

routes_app = typer.Typer(help="Routes: backends by priority and weight, bursts, fallback chains.")
rules_app = typer.Typer(help="Responder rules: templated answers matched by keywords.")
queue_app = typer.Typer(help="The human hand-off queue: list, show and answer tickets.")
for _app in (routes_app, rules_app, queue_app):
    _app.info.no_args_is_help = True

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@contextmanager
def _routes() -> Iterator[RouteService]:
    from stratum.routing.routes import RouteService

    with open_database() as db:
        yield RouteService(db)


@contextmanager
def _rules() -> Iterator[RuleService]:
    from stratum.routing.rules import RuleService

    with open_database() as db:
        yield RuleService(db)


@contextmanager
def _tickets() -> Iterator[TicketService]:
    from stratum.routing.tickets import TicketService

    with open_database() as db:
        yield TicketService(db)


def parse_backend(spec: str) -> dict[str, Any]:
    """``REF[,priority=N][,weight=W]`` → a backend document."""
    ref, *options = [part.strip() for part in spec.split(",")]
    backend: dict[str, Any] = {"model": ref}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in ("priority", "weight"):
            raise CliError(f"--backend takes REF[,priority=N][,weight=W], got {spec!r}", exit_code=2)
        try:
            backend[key] = int(value) if key == "priority" else float(value)
        except ValueError as exc:
            raise CliError(f"--backend {key} must be a number, got {value!r}", exit_code=2) from exc
    return backend


def parse_link(spec: str) -> dict[str, Any]:
    """``model:NAME`` | ``rules`` | ``human`` → a fallback link document."""
    if spec in ("rules", "human"):
        return {"kind": spec}
    kind, sep, target = spec.partition(":")
    if kind != "model" or not sep or not target:
        raise CliError(f"--fallback takes model:NAME, rules or human, got {spec!r}", exit_code=2)
    return {"kind": "model", "target": target}


def _route_row(route: Any) -> dict[str, Any]:
    backends = ", ".join(
        f"{b.model} (p{b.priority}" + (f", w{b.weight:g})" if b.weight != 1 else ")") for b in route.backends
    )
    return {
        "model": route.model,
        "backends": backends or f"{route.model} (p0)",
        "burst_queue": "default" if route.burst_queue is None else route.burst_queue,
        "fallback": " → ".join(link.label for link in route.fallback),
        "triggers": ",".join(route.triggers),
    }


@routes_app.command("set")
def set_route(
    model: Annotated[str, typer.Argument(help="The model name clients request.")],
    backend: Annotated[
        list[str] | None,
        typer.Option("--backend", "-b", help="REF[,priority=N][,weight=W]; repeat. Default: MODEL itself."),
    ] = None,
    fallback: Annotated[
        list[str] | None,
        typer.Option("--fallback", "-f", help="model:NAME, rules or human, in chain order; repeat."),
    ] = None,
    trigger: Annotated[
        list[str] | None,
        typer.Option("--trigger", help="error, timeout, saturation, content_blocked; repeat. Default: all."),
    ] = None,
    burst_queue: Annotated[
        int | None, typer.Option("--burst-queue", help="Local queue length that bursts to the next priority.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Seconds to the first token before falling back.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create or replace the route of MODEL (the gateway applies it within a second)."""
    from stratum.routing.schemas import Route

    document: dict[str, Any] = {
        "model": model,
        "backends": [parse_backend(b) for b in backend or []],
        "fallback": [parse_link(f) for f in fallback or []],
        "burst_queue": burst_queue,
        "timeout_s": timeout,
    }
    if trigger:
        document["triggers"] = trigger
    route = Route.model_validate(document)
    with _routes() as service:
        saved = service.set_route(route, actor=cli_actor())
    if as_json:
        print_json(saved.model_dump(mode="json"))
    else:
        print_fields(_route_row(saved), title=f"route of {saved.model}")


@routes_app.command("list")
def list_routes(as_json: JsonOption = False) -> None:
    """Show every stored route."""
    with _routes() as service:
        routes = service.list_routes()
    if as_json:
        print_json([r.model_dump(mode="json") for r in routes])
        return
    print_table(
        [_route_row(r) for r in routes],
        ("model", "backends", "burst_queue", "fallback", "triggers"),
        title="routes",
        empty="no routes (every model is served by the registry model of its name)",
    )


@routes_app.command("remove")
def remove_route(model: Annotated[str, typer.Argument(help="The routed model name.")]) -> None:
    """Delete MODEL's route (it is then served by the registry model of that name)."""
    with _routes() as service:
        service.remove_route(model, actor=cli_actor())
    print_success(f"removed the route of {model}")


@rules_app.command("set")
def set_rule(
    name: Annotated[str, typer.Argument(help="Rule name (letters, digits, . _ -).")],
    keyword: Annotated[list[str], typer.Option("--keyword", "-k", help="A keyword (Chinese works); repeat.")],
    template: Annotated[
        str, typer.Option("--template", "-t", help="Answer template (Jinja: {{ question }}, {{ model }}).")
    ],
    intent: Annotated[str | None, typer.Option("--intent", help="Intent label, e.g. refund.")] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model-name glob it applies to; repeat.")
    ] = None,
    match_all: Annotated[bool, typer.Option("--all", help="Require every keyword (default: any).")] = False,
    priority: Annotated[int, typer.Option("--priority", help="Higher wins among equal matches.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Create or replace a responder rule."""
    from stratum.routing.schemas import ResponderRule

    rule = ResponderRule(
        name=name,
        intent=intent,
        keywords=keyword,
        match="all" if match_all else "any",
        template=template,
        models=model or [],
        priority=priority,
    )
    with _rules() as service:
        saved = service.set_rule(rule, actor=cli_actor())
    if as_json:
        print_json(saved.model_dump(mode="json"))
    else:
        print_success(f"rule {saved.name}: {len(saved.keywords)} keyword(s), match {saved.match}")


@rules_app.command("list")
def list_rules(as_json: JsonOption = False) -> None:
    """Show the responder rules."""
    with _rules() as service:
        rules = service.list_rules()
    if as_json:
        print_json([r.model_dump(mode="json") for r in rules])
        return
    print_table(
        [{**r.model_dump(), "keywords": ", ".join(r.keywords), "models": ", ".join(r.models)} for r in rules],
        ("name", "intent", "keywords", "match", "models", "priority", "template"),
        title="responder rules",
        empty="no responder rules",
    )


@rules_app.command("remove")
def remove_rule(name: Annotated[str, typer.Argument(help="Rule name.")]) -> None:
    """Delete a responder rule."""
    with _rules() as service:
        service.remove_rule(name, actor=cli_actor())
    print_success(f"removed rule {name}")


@queue_app.command("list")
def list_queue(
    status: Annotated[str, typer.Option("--status", help="open, answered or all.")] = "open",
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """Requests handed to a person, oldest first."""
    if status not in ("open", "answered", "all"):
        raise CliError(f"--status takes open, answered or all, got {status!r}", exit_code=2)
    with _tickets() as service:
        tickets = service.list(status=None if status == "all" else status, limit=limit)  # type: ignore[arg-type]
    if as_json:
        print_json([t.model_dump(mode="json") for t in tickets])
        return
    print_table(
        [t.model_dump() for t in tickets],
        ("id", "model", "status", "reason", "question", "created_at", "answer"),
        title="hand-off queue",
        empty=f"no {status} tickets" if status != "all" else "no tickets",
    )


@queue_app.command("show")
def show_ticket(
    ticket: Annotated[str, typer.Argument(help="Ticket id.")], as_json: JsonOption = False
) -> None:
    """One ticket with its question and answer."""
    with _tickets() as service:
        found = service.get(ticket)
    if as_json:
        print_json(found.model_dump(mode="json"))
    else:
        print_fields(found.model_dump(exclude={"messages"}), title=f"ticket {found.id}")


@queue_app.command("answer")
def answer_ticket(
    ticket: Annotated[str, typer.Argument(help="Ticket id.")],
    text: Annotated[str, typer.Argument(help="The answer the client will fetch.")],
    as_json: JsonOption = False,
) -> None:
    """Answer a ticket; the client reads it with GET /v1/tickets/TICKET."""
    if not text.strip():
        raise CliError("the answer is empty", exit_code=2)
    with _tickets() as service:
        answered = service.answer(ticket, text, actor=cli_actor())
    if as_json:
        print_json(answered.model_dump(mode="json"))
    else:
        print_success(f"answered {answered.id}")
