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
_CREATED_FIELDS = ("id", "name", "role", "prefix", "expires_at")


class Role(StrEnum):
    user = "user"
    admin = "admin"


@app.command("create")
def create(
    name: Annotated[
        str | None,
        typer.Option("--name", help="Label, e.g. the team or service using it (default: cli:$USER)."),
    ] = None,
    role: Annotated[
        Role, typer.Option("--role", help="admin keys may also manage models and keys.")
    ] = Role.user,
    expires_days: Annotated[
        int | None, typer.Option("--expires-days", min=1, help="Days until the key stops working.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key and print it once (it cannot be shown again)."""
    expires_at = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    with key_service() as keys:
        plaintext, key = keys.create_key(name=name or cli_actor(), role=role.value, expires_at=expires_at)
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
        revoked = keys.revoke(key_id)
    if as_json:
        print_json(revoked.model_dump(mode="json"))
        return
    print_success(f"revoked key {revoked.id} ({revoked.name}, {revoked.prefix}…)")
