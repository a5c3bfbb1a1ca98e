"""``stratum keys …``: API keys for the gateway.

Only a hash of each key is stored, so the plaintext is printed once, by ``keys create``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import typer

from stratum.cli.output import print_fields, print_json, print_success, print_table, print_warning
from stratum.cli.store import cli_actor, key_service

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

# Table columns (``status`` already says whether a key is revoked or expired); --json has every field.
_COLUMNS = ("id", "name", "role", "prefix", "status", "created_at", "expires_at", "last_used_at")
_HEADERS = {"created_at": "created", "expires_at": "expires", "last_used_at": "last used"}
_CREATED_FIELDS = ("id", "name", "role", "project", "models", "prefix", "expires_at")


class Role(StrEnum):
    user = "user"
    admin = "admin"
    org_admin = "org_admin"
    developer = "developer"
    viewer = "viewer"


def _split(values: list[str] | None) -> list[str]:
    """``--models a,b --models c`` → [a, b, c]."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


@app.command("create")
def create(
    project: Annotated[
        str | None,
        typer.Argument(
            metavar="[ORG/PROJECT]",
            help="The project the key belongs to (ORG alone for an org_admin key); none for a platform key.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Label, e.g. the team or service using it (default: cli:$USER)."),
    ] = None,
    role: Annotated[
        Role | None,
        typer.Option(
            "--role",
            help="Platform keys: user (default) or admin. Project keys: developer (default), "
            "viewer or org_admin.",
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--models", help="Model-name globs the key may use, e.g. 'qwen*' (comma-separated)."),
    ] = None,
    endpoints: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoints",
            help="Endpoints the key may call: chat, completions, embeddings, models (comma-separated).",
        ),
    ] = None,
    ip_allow: Annotated[
        list[str] | None,
        typer.Option("--ip-allow", help="Client addresses or CIDR networks allowed to use the key."),
    ] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, help="Requests per minute for this key.")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", min=1, help="Tokens per minute for this key.")] = None,
    token_budget: Annotated[
        int | None, typer.Option("--token-budget", min=1, help="Tokens per calendar month for this key.")
    ] = None,
    expires_days: Annotated[
        int | None, typer.Option("--expires-days", min=1, help="Days until the key stops working.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key and print it once (it cannot be shown again)."""
    from stratum.governance.schemas import Limits

    expires_at = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    chosen = role.value if role else ("user" if project is None else "developer")
    with key_service() as keys:
        plaintext, key = keys.create_key(
            name=name or cli_actor(),
            role=chosen,
            expires_at=expires_at,
            project=project,
            models=_split(models),
            endpoints=_split(endpoints),
            ip_allow=_split(ip_allow),
            limits=Limits(rpm=rpm, tpm=tpm, token_budget=token_budget),
            actor=cli_actor(),
        )
    if as_json:
        print_json({"key": plaintext, **key.model_dump(mode="json")})
        return
    info = key.model_dump()
    print_fields({_HEADERS.get(f, f): info[f] for f in _CREATED_FIELDS}, title="API key created")
    typer.echo(plaintext)
    print_warning("store this key now: it is shown only once and cannot be recovered")


@app.command("list")
def list_keys(as_json: JsonFlag = False) -> None:
    """List API keys (never the keys themselves)."""
    with key_service() as keys:
        listed = keys.list_keys()
    if as_json:
        print_json([key.model_dump(mode="json") for key in listed])
        return
    print_table(
        [key.model_dump() for key in listed],
        _COLUMNS,
        headers=_HEADERS,
        empty="no API keys yet; create one with `stratum keys create`",
    )


@app.command("revoke")
def revoke(
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The id or prefix shown by `stratum keys list`.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Revoke an API key; requests using it fail from the next one on."""
    with key_service() as keys:
        revoked = keys.revoke(key_id, actor=cli_actor())
    if as_json:
        print_json(revoked.model_dump(mode="json"))
        return
    print_success(f"revoked key {revoked.id} ({revoked.name}, {revoked.prefix}…)")
