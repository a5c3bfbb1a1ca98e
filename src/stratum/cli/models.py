"""``stratum models …``: the model registry from the terminal.

A model is a name with numbered, immutable versions; aliases (``prod``, ``staging``) point at a
version and ``latest`` always means the highest one. Each version is either a local Hugging Face
directory (``--path``) served by the embedded engine, or an OpenAI-compatible upstream
(``--upstream``: vLLM, llama.cpp server, a cloud API) that the gateway proxies.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from stratum.cli.output import (
    CliError,
    abridge,
    print_fields,
    print_json,
    print_note,
    print_success,
    print_table,
    print_warning,
)
from stratum.cli.store import cli_actor, registry_service

if TYPE_CHECKING:
    from stratum.registry.schemas import ModelPublic, ModelVersionPublic

app = typer.Typer(help="Register, inspect and remove models.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
NameArg = Annotated[str, typer.Argument(help="Model name, e.g. qwen2.5-7b-instruct.")]

_LIST_COLUMNS = ("name", "kind", "source", "latest", "aliases", "target", "description")
# Characters of a description `models list` shows; `models show` and --json have all of it.
_DESCRIPTION_WIDTH = 32
_VERSION_COLUMNS = ("version", "source", "aliases", "target", "created_by", "created_at")


class Kind(StrEnum):
    chat = "chat"
    embedding = "embedding"


def _target(version: ModelVersionPublic) -> str:
    """Where a version's weights or endpoint live, in one cell."""
    if version.upstream_url:
        return (
            f"{version.upstream_url} ({version.upstream_model})"
            if version.upstream_model
            else version.upstream_url
        )
    return version.artifact_uri or version.source


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{alias}→{number}" for alias, number in aliases.items())


def _summary_row(model: ModelPublic) -> dict[str, Any]:
    latest = model.latest
    return {
        "name": model.name,
        "kind": model.kind,
        "source": latest.source if latest else None,
        "latest": latest.version if latest else None,
        "aliases": _aliases(model.aliases),
        "target": _target(latest) if latest else None,
        "description": abridge(model.description, _DESCRIPTION_WIDTH),
    }


def _version_row(version: ModelVersionPublic) -> dict[str, Any]:
    return {
        "version": version.version,
        "source": version.source,
        "aliases": ", ".join(version.aliases),
        "target": _target(version),
        "created_by": version.created_by,
        "created_at": version.created_at,
    }


@app.command("list")
def list_models(as_json: JsonFlag = False) -> None:
    """List registered models with their latest version and aliases."""
    with registry_service() as registry:
        models = registry.list_models()
    if as_json:
        print_json([m.model_dump(mode="json") for m in models])
        return
    print_table(
        [_summary_row(m) for m in models],
        _LIST_COLUMNS,
        empty="no models registered; add one with `stratum models add NAME --path DIR` or `--upstream URL`",
    )


def _source_fields(
    path: Path | None, upstream: str | None, upstream_model: str | None, api_key_env: str | None
) -> dict[str, Any]:
    """The ``add_model`` arguments for exactly one of --path / --upstream."""
    if (path is None) == (upstream is None):
        raise CliError(
            "give exactly one of --path DIR (a local model) or --upstream URL (an OpenAI-compatible server)",
            exit_code=2,
        )
    if path is not None:
        if upstream_model or api_key_env:
            raise CliError("--upstream-model and --api-key-env only apply with --upstream", exit_code=2)
        # Stored absolute, so the server finds it whatever its working directory.
        return {"source": "local", "path": path.expanduser().resolve()}
    if api_key_env and api_key_env not in os.environ:
        print_warning(
            f"{api_key_env} is not set in this shell; the server needs it set when it calls {upstream}"
        )
    return {
        "source": "upstream",
        "upstream_url": upstream,
        "upstream_model": upstream_model,
        "api_key_env": api_key_env,
    }


@app.command("add")
def add(
    name: NameArg,
    path: Annotated[
        Path | None, typer.Option("--path", help="Local Hugging Face model directory (with config.json).")
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option("--upstream", help="Base URL of an OpenAI-compatible server, e.g. http://gpu1:8000/v1."),
    ] = None,
    upstream_model: Annotated[
        str | None, typer.Option("--upstream-model", help="Model id on the upstream (default: NAME).")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Environment variable holding the upstream's API key."),
    ] = None,
    kind: Annotated[Kind, typer.Option("--kind", help="What the model serves.")] = Kind.chat,
    adapter: Annotated[
        Path | None,
        typer.Option("--adapter", help="A PEFT LoRA adapter directory, served on the --base model."),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option("--base", help="The exact base version an --adapter was trained on, e.g. qwen-mini@1."),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Free text (any language).")
    ] = None,
    pin: Annotated[
        bool, typer.Option("--pin", help="Preload this version at server start and never evict it.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Register a model, or a new version of an existing one.

    Exactly one of --path (local weights), --upstream (an OpenAI-compatible server) or --adapter
    with --base (a LoRA adapter served on a registered base model, in the base's engine).
    """
    if adapter is not None or base is not None:
        if adapter is None or base is None:
            raise CliError("--adapter DIR and --base NAME@VERSION go together", exit_code=2)
        if path is not None or upstream is not None:
            raise CliError("--adapter cannot be combined with --path or --upstream", exit_code=2)
        fields: dict[str, Any] = {
            "source": "local",
            "variant": "adapter",
            "base": base,
            "path": adapter.expanduser().resolve(),
        }
    else:
        fields = _source_fields(path, upstream, upstream_model, api_key_env)
    with registry_service() as registry:
        # A local directory is hashed (possibly gigabytes); show that something is happening.
        status = f"hashing {fields['path']}…" if "path" in fields else f"registering {name}…"
        with Console(stderr=True).status(status):
            version = registry.add_model(
                name=name,
                kind=kind.value,
                description=description,
                actor=cli_actor(),
                metadata={"pinned": True} if pin else None,
                **fields,
            )
    if as_json:
        print_json(version.model_dump(mode="json"))
        return
    if version.variant == "adapter":
        print_success(f"added {version.ref} (adapter on {version.metadata.get('base')}): {_target(version)}")
        return
    print_success(f"added {version.ref} ({version.source}, {version.kind}): {_target(version)}")


@app.command("show")
def show(name: NameArg, as_json: JsonFlag = False) -> None:
    """Show a model: its versions, aliases and metadata."""
    with registry_service() as registry:
        model = registry.get_model(name)
    if as_json:
        print_json(model.model_dump(mode="json"))
        return
    print_fields(
        {
            "name": model.name,
            "kind": model.kind,
            "description": model.description,
            "default alias": model.default_alias,
            "aliases": _aliases(model.aliases),
            "created": model.created_at,
        },
        title=model.name,
    )
    print_table([_version_row(v) for v in model.versions], _VERSION_COLUMNS, title="versions")
    latest = model.latest
    if latest is not None and latest.metadata:
        print_fields(latest.metadata, title=f"metadata ({latest.ref})", raw_keys=True)


@app.command("alias")
def alias(
    name: NameArg,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias to set, e.g. prod.")],
    version: Annotated[int, typer.Argument(min=1, help="Version number the alias points at.")],
    as_json: JsonFlag = False,
) -> None:
    """Point NAME:ALIAS at a version (the move is kept in the alias history)."""
    with registry_service() as registry:
        target = registry.set_alias(name=name, alias=alias_name, version=version, actor=cli_actor())
    if as_json:
        print_json(target.model_dump(mode="json"))
        return
    print_success(f"{name}:{alias_name} → {target.ref}")


@app.command("unalias")
def unalias(
    name: NameArg,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias to remove.")],
) -> None:
    """Remove the alias NAME:ALIAS (the versions stay)."""
    with registry_service() as registry:
        registry.remove_alias(name=name, alias=alias_name, actor=cli_actor())
    print_success(f"removed alias {name}:{alias_name}")


@app.command("remove")
def remove(
    ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="A model, or one version of it.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Remove a model with all its versions and aliases, or just NAME@VERSION.

    Files of local models are left on disk.
    """
    name, _, version_text = ref.partition("@")
    version: int | None = None
    if version_text:
        if not version_text.isdigit():
            raise CliError(f"'{ref}': a version must be a number, as in {name}@1", exit_code=2)
        version = int(version_text)
    with registry_service() as registry:
        model = registry.get_model(name)  # fail on an unknown name before asking anything
        what = f"{name}@{version}" if version else f"{name} and its {len(model.versions)} version(s)"
        if not yes and not typer.confirm(f"Remove {what}?", default=False, err=True):
            raise CliError("nothing removed")  # a "no" is not success: scripts must not assume it went
        if version is None:
            registry.remove_model(name)
        else:
            registry.remove_version(name=name, version=version)
    if as_json:
        print_json({"removed": name if version is None else f"{name}@{version}"})
        return
    print_success(f"removed {what}")
    if model.latest is not None and model.latest.source == "local":
        print_note("files on disk were left in place")
