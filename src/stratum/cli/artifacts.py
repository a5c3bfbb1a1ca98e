"""``stratum models move NAME@V --tier cold|hot``: move a version's files between artifact tiers."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from stratum.cli.output import print_json, print_note, print_success
from stratum.cli.store import cli_actor, open_database
from stratum.settings import Settings


class TierChoice(StrEnum):
    hot = "hot"
    cold = "cold"


def move(
    ref: Annotated[str, typer.Argument(help="The exact version to move, e.g. qwen-7b@3.")],
    tier: Annotated[
        TierChoice, typer.Option("--tier", help="hot: local disk, served; cold: STRATUM_ARTIFACTS_URL.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Copy a version to the other tier, verify its checksum there, then switch and clean up."""
    from dataclasses import asdict

    from stratum.registry.artifacts import ArtifactService
    from stratum.registry.service import RegistryService

    settings = Settings()
    with open_database(settings) as db:
        service = ArtifactService(
            db,
            RegistryService(db),
            hot_dir=settings.artifacts_dir,
            cold_url=settings.artifacts_url,
            endpoint_url=settings.artifacts_endpoint_url,
        )
        result = service.move(ref, tier=tier.value, actor=cli_actor())
    if as_json:
        print_json(asdict(result))
        return
    print_success(
        f"{result.ref} moved to the {result.tier} tier: {result.destination} "
        f"({result.files} files, {result.bytes} bytes, checksum {result.checksum[:12]}… verified)"
    )
    if not result.source_deleted:
        print_note(f"{result.source} was registered by path and is left in place.")
