"""The model registry: named models, numbered immutable versions, movable aliases with history."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from stratum.engine.adapter_config import read_adapter_config
from stratum.errors import Conflict, InvalidRequest, ModelNotFound
from stratum.registry import repo
from stratum.registry.checksum import directory_checksum, read_metadata
from stratum.registry.schemas import (
    LATEST,
    MODEL_KINDS,
    MODEL_SOURCES,
    AliasEventPublic,
    ModelPublic,
    ModelVersionPublic,
    parse_ref,
    validate_alias,
    validate_name,
)
from stratum.registry.tables import ModelRow, ModelVersionRow
from stratum.storage import Database, advisory_lock

_ENV_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# How many names an error message lists before it stops: enough to spot a typo.
_SUGGESTIONS = 20


def _model_dir(path: str | Path | None, *, require_config: bool) -> Path:
    if path is None:
        raise InvalidRequest("A local model needs 'path': a directory with config.json.", param="path")
    directory = Path(path).expanduser().resolve()
    if not directory.is_dir():
        raise InvalidRequest(f"Model path '{directory}' is not a directory.", param="path")
    if require_config and not (directory / "config.json").is_file():
        raise InvalidRequest(
            f"Model path '{directory}' has no config.json: expected a Hugging Face style model directory "
            "(config.json, weights, tokenizer files).",
            param="path",
        )
    return directory


def _is_uri(path: str | Path | None) -> bool:
    """``builtin:e5``-style references, as opposed to filesystem paths."""
    if not isinstance(path, str) or Path(path).expanduser().exists():
        return False
    scheme = urlsplit(path).scheme
    return len(scheme) > 1  # a one-letter "scheme" is a Windows drive


def _check_upstream_url(url: str | None) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequest(
            f"upstream_url must be an http(s) URL such as https://api.example.com/v1, got {url!r}.",
            param="upstream_url",
        )
    return url or ""


class RegistryService:
    """Models and their versions. Serves: the gateway (``resolve`` per request), the CLI and console
    (add/list/alias/remove), and other domains that pin a version (``ModelVersionPublic.ref``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_model(
        self,
        *,
        name: str,
        kind: str = "chat",
        source: str,
        path: str | Path | None = None,
        upstream_url: str | None = None,
        upstream_model: str | None = None,
        api_key_env: str | None = None,
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        actor: str = "system",
        variant: str = "full",
        base: str | None = None,
    ) -> ModelVersionPublic:
        """Register a new version of ``name`` (creating the model on first use).

        ``variant="adapter"`` registers a PEFT LoRA adapter directory (``path``) on the exact base
        version ``base`` names (``NAME@VERSION``, or an alias resolved now); the base's checksum is
        recorded so the adapter is never served on other weights (``adapter_base``).
        """
        validate_name(name)
        if variant == "adapter" or base is not None:
            return self._add_adapter(
                name=name,
                kind=kind,
                source=source,
                path=path,
                base=base,
                variant=variant,
                metadata=metadata,
                description=description,
                actor=actor,
            )
        if variant != "full":
            raise InvalidRequest(
                f"variant must be 'full' or 'adapter' (with base), got {variant!r}.", param="variant"
            )
        if kind not in MODEL_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}.", param="kind")
        if source not in MODEL_SOURCES:
            raise InvalidRequest(
                f"source must be one of {', '.join(MODEL_SOURCES)}, got {source!r}.", param="source"
            )
        if source != "upstream" and (upstream_url or upstream_model or api_key_env):
            raise InvalidRequest(
                "upstream_url, upstream_model and api_key_env only apply to source 'upstream'.",
                param="upstream_url",
            )
        if source == "encoder" and kind != "embedding":
            raise InvalidRequest("A builtin encoder must have kind 'embedding'.", param="kind")
        try:
            json.dumps(metadata or {})
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"metadata must be JSON-serialisable: {exc}", param="metadata") from exc

        # Artifact inspection (a streaming hash of possibly GBs) happens before the transaction opens.
        fields: dict[str, Any] = {"source": source}
        detected: dict[str, Any] = {}
        if source == "upstream":
            if path is not None:
                raise InvalidRequest("An upstream model has no local 'path'.", param="path")
            if api_key_env is not None and not _ENV_PATTERN.fullmatch(api_key_env):
                raise InvalidRequest(
                    f"api_key_env must be an environment variable name, got {api_key_env!r}.",
                    param="api_key_env",
                )
            fields |= {
                "upstream_url": _check_upstream_url(upstream_url),
                "upstream_model": upstream_model or name,
                "api_key_env": api_key_env,
            }
        elif source == "encoder" and _is_uri(path):
            # A builtin encoder's weights ship with the package: it is named by a URI, not a directory.
            fields["artifact_uri"] = str(path)
        elif source in ("local", "demo") or path is not None:
            directory = _model_dir(path, require_config=source != "encoder")
            detected = read_metadata(directory)
            fields |= {"artifact_uri": str(directory), "checksum": directory_checksum(directory)}
        fields["meta"] = detected | (metadata or {})
        return self._add_version(name=name, kind=kind, description=description, actor=actor, fields=fields)

    def _add_adapter(
        self,
        *,
        name: str,
        kind: str,
        source: str,
        path: str | Path | None,
        base: str | None,
        variant: str,
        metadata: dict[str, Any] | None,
        description: str | None,
        actor: str,
    ) -> ModelVersionPublic:
        if variant != "adapter":
            raise InvalidRequest("'base' only applies to variant 'adapter'.", param="base")
        if base is None:
            raise InvalidRequest(
                "An adapter needs 'base': the exact base model version it was trained on, e.g. qwen-mini@1.",
                param="base",
            )
        if kind != "chat" or source != "local":
            raise InvalidRequest(
                "An adapter is a local chat model (kind 'chat', source 'local').", param="kind"
            )
        if metadata is not None:
            try:
                json.dumps(metadata)
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"metadata must be JSON-serialisable: {exc}", param="metadata") from exc
        base_version = self.resolve(base)
        if base_version.kind != "chat" or base_version.variant != "full" or base_version.checksum is None:
            raise InvalidRequest(
                f"'{base_version.ref}' cannot be an adapter's base: it must be a local chat model with "
                "full weights (not an upstream, an encoder or another adapter).",
                param="base",
            )
        directory = _model_dir(path, require_config=False)
        config = read_adapter_config(directory)
        detected = {
            "base": base_version.ref,
            "base_checksum": base_version.checksum,
            "peft_type": "LORA",
            "rank": config.get("r"),
            "lora_alpha": config.get("lora_alpha"),
            "target_modules": config.get("target_modules"),
            "size_bytes": read_metadata(directory)["size_bytes"],
        }
        fields = {
            "source": "local",
            "variant": "adapter",
            "base_version_id": base_version.id,
            "artifact_uri": str(directory),
            "checksum": directory_checksum(directory),
            "meta": detected | (metadata or {}),
        }
        return self._add_version(name=name, kind=kind, description=description, actor=actor, fields=fields)

    def adapter_base(self, adapter: ModelVersionPublic) -> ModelVersionPublic:
        """The exact base version an adapter runs on, refusing a base whose checksum changed."""
        if adapter.variant != "adapter" or adapter.base_version_id is None:
            raise InvalidRequest(f"'{adapter.ref}' is not an adapter.", param="model")
        with self._db.session(write=False) as session:
            row = repo.get_version_by_id(session, adapter.base_version_id)
            model = repo.get_model_by_id(session, row.model_id) if row is not None else None
            if row is None or model is None:
                raise ModelNotFound(f"The base of adapter '{adapter.ref}' no longer exists.", param="model")
            base = self._version_public(session, model, row)
        recorded = adapter.metadata.get("base_checksum")
        if recorded != base.checksum:
            raise Conflict(
                f"Adapter '{adapter.ref}' was registered on '{base.ref}' "
                f"with checksum {str(recorded)[:12]}…, "
                f"but '{base.ref}' now has checksum {str(base.checksum)[:12]}…; refusing to serve it on "
                "other weights. Register the adapter again on the right base.",
                param="model",
                code="adapter_base_mismatch",
            )
        return base

    def _add_version(
        self, *, name: str, kind: str, description: str | None, actor: str, fields: dict[str, Any]
    ) -> ModelVersionPublic:
        with self._db.session() as session:
            # Serialises concurrent adds of the same name (PostgreSQL; SQLite writers already are).
            advisory_lock(session, f"registry.model:{name}")
            model = repo.get_model(session, name)
            if model is None:
                model = repo.create_model(session, name=name, kind=kind, description=description)
            elif model.kind != kind:
                raise Conflict(
                    f"Model '{name}' is a {model.kind} model; a new version cannot be {kind}.", param="kind"
                )
            elif description is not None:
                model.description = description
            row = repo.add_version(session, model=model, created_by=actor, **fields)
            return self._version_public(session, model, row)

    def list_models(self) -> list[ModelPublic]:
        with self._db.session(write=False) as session:
            return self._models_public(session, repo.list_models(session))

    def get_model(self, name: str) -> ModelPublic:
        with self._db.session(write=False) as session:
            return self._models_public(session, [self._model(session, name)])[0]

    def resolve(self, ref: str, *, at: datetime | None = None) -> ModelVersionPublic:
        """The version ``ref`` names: ``NAME`` (its default alias), ``NAME@VERSION`` or ``NAME:ALIAS``.

        With ``at``, answer as of that instant (from the alias history): what did ``prod`` serve then?
        The default alias itself is not versioned, so ``NAME`` uses today's default alias.
        """
        if at is not None and at.tzinfo is None:
            raise InvalidRequest("'at' must be timezone-aware.", param="at")
        name, selector = parse_ref(ref)
        with self._db.session(write=False) as session:
            model = self._model(session, name)
            selector = model.default_alias if selector is None else selector
            if isinstance(selector, int):
                row = repo.get_version(session, model_id=model.id, version=selector)
                if row is None or (at is not None and row.created_at > at):
                    raise ModelNotFound(
                        f"The model '{name}@{selector}' does not exist"
                        + (f" at {at.isoformat()}" if at else "")
                        + f": {self._versions_hint(session, model)}.",
                        param="model",
                    )
            elif selector == LATEST:
                row = repo.latest_version(session, model.id, at=at)
                if row is None:
                    when = f" at {at.isoformat()}" if at else ""
                    raise ModelNotFound(f"The model '{name}' has no versions{when}.", param="model")
            else:
                row = self._alias_target(session, model, selector, at=at)
            return self._version_public(session, model, row)

    def set_alias(self, *, name: str, alias: str, version: int, actor: str = "system") -> ModelVersionPublic:
        """Point ``name:alias`` at ``name@version``; the move is kept in ``alias_history``."""
        validate_alias(alias)
        with self._db.session() as session:
            model = self._model(session, name)
            target = repo.get_version(session, model_id=model.id, version=version)
            if target is None:
                hint = self._versions_hint(session, model)
                raise ModelNotFound(
                    f"Cannot point '{name}:{alias}' at version {version}: {hint}.", param="version"
                )
            repo.move_alias(session, model=model, alias=alias, target=target, actor=actor)
            return self._version_public(session, model, target)

    def remove_alias(self, *, name: str, alias: str, actor: str = "system") -> None:
        with self._db.session() as session:
            model = self._model(session, name)
            if model.default_alias == alias:
                raise Conflict(
                    f"'{alias}' is the default alias of '{name}'; set another default first.", param="alias"
                )
            if not repo.move_alias(session, model=model, alias=alias, target=None, actor=actor):
                raise ModelNotFound(f"The model '{name}:{alias}' does not exist.", param="alias")

    def set_default_alias(self, *, name: str, alias: str) -> ModelPublic:
        """Choose what a bare ``NAME`` resolves to: 'latest' or an existing alias."""
        with self._db.session() as session:
            model = self._model(session, name)
            if alias != LATEST and repo.get_alias(session, model_id=model.id, alias=alias) is None:
                raise InvalidRequest(f"'{name}' has no alias '{alias}'; set it first.", param="alias")
            model.default_alias = alias
            return self._models_public(session, [model])[0]

    def alias_history(self, name: str, alias: str) -> list[AliasEventPublic]:
        """Every move of ``name:alias``, oldest first."""
        with self._db.session(write=False) as session:
            model = self._model(session, name)
            return [
                AliasEventPublic(
                    name=name,
                    alias=alias,
                    from_version=event.from_version,
                    to_version=event.to_version,
                    actor=event.actor,
                    at=event.at,
                )
                for event in repo.alias_events(session, model_id=model.id, alias=alias)
            ]

    def remove_version(self, *, name: str, version: int) -> None:
        """Delete one version. Its number is never reused. Refused while an alias or adapter uses it."""
        with self._db.session() as session:
            model = self._model(session, name)
            row = repo.get_version(session, model_id=model.id, version=version)
            if row is None:
                raise ModelNotFound(
                    f"The model '{name}@{version}' does not exist: {self._versions_hint(session, model)}.",
                    param="version",
                )
            serving = [a.alias for a in repo.aliases_of(session, [model.id]) if a.version_id == row.id]
            if serving:
                raise Conflict(
                    f"'{name}@{version}' is served by alias(es) {', '.join(serving)}; move them first.",
                    param="version",
                )
            if repo.dependants(session, [row.id]):
                raise Conflict(f"Other versions are built on '{name}@{version}'.", param="version")
            repo.delete_version(session, row)

    def remove_model(self, name: str) -> None:
        """Delete the model with all its versions, aliases and alias history."""
        with self._db.session() as session:
            model = self._model(session, name)
            version_ids = [v.id for v in repo.versions_of(session, [model.id])]
            if repo.dependants(session, version_ids, outside_model=model.id):
                raise Conflict(
                    f"Versions of other models are built on '{name}'; remove them first.", param="name"
                )
            repo.delete_model(session, model)

    # -- helpers ---------------------------------------------------------------------------------

    def _model(self, session: Session, name: str) -> ModelRow:
        model = repo.get_model(session, name)
        if model is None:
            known = repo.model_names(session, limit=_SUGGESTIONS)
            hint = f"Available models: {', '.join(known)}." if known else "No models are registered."
            raise ModelNotFound(f"The model '{name}' does not exist. {hint}", param="model")
        return model

    def _versions_hint(self, session: Session, model: ModelRow) -> str:
        numbers = [str(v.version) for v in repo.versions_of(session, [model.id])]
        return f"'{model.name}' has versions {', '.join(numbers)}" if numbers else f"'{model.name}' has none"

    def _alias_target(
        self, session: Session, model: ModelRow, alias: str, *, at: datetime | None
    ) -> ModelVersionRow:
        version_id: int | None = None
        if at is None:
            current = repo.get_alias(session, model_id=model.id, alias=alias)
            version_id = current.version_id if current else None
        else:
            event = repo.alias_event_at(session, model_id=model.id, alias=alias, at=at)
            if event is not None and event.to_version is not None and event.to_version_id is None:
                raise ModelNotFound(
                    f"'{model.name}:{alias}' served '{model.name}@{event.to_version}' at {at.isoformat()}, "
                    "a version that has since been removed.",
                    param="model",
                )
            version_id = event.to_version_id if event else None
        row = repo.get_version_by_id(session, version_id) if version_id is not None else None
        if row is None:
            names = [LATEST, *(a.alias for a in repo.aliases_of(session, [model.id]))]
            when = f" at {at.isoformat()}" if at else ""
            raise ModelNotFound(
                f"The model '{model.name}:{alias}' does not exist{when}: "
                f"'{model.name}' has aliases {', '.join(names)}.",
                param="model",
            )
        return row

    def _version_public(self, session: Session, model: ModelRow, row: ModelVersionRow) -> ModelVersionPublic:
        return self._models_public(session, [model], only=row.id)[0].versions[0]

    def _models_public(
        self, session: Session, models: Sequence[ModelRow], *, only: int | None = None
    ) -> list[ModelPublic]:
        """Build public models with three queries in all, whatever the number of models."""
        ids = [m.id for m in models]
        versions = repo.versions_of(session, ids)
        aliases = repo.aliases_of(session, ids)
        number = {v.id: v.version for v in versions}
        latest = {v.model_id: v.id for v in versions}  # versions come in ascending order
        result = []
        for model in models:
            alias_map = {LATEST: number[latest[model.id]]} if model.id in latest else {}
            alias_map |= {a.alias: number[a.version_id] for a in aliases if a.model_id == model.id}
            public_versions = [
                self._row_public(model, v, [a for a, n in alias_map.items() if n == v.version])
                for v in versions
                if v.model_id == model.id and only in (None, v.id)
            ]
            result.append(
                ModelPublic(
                    id=model.id,
                    name=model.name,
                    kind=model.kind,  # type: ignore[arg-type]  # checked on write
                    description=model.description,
                    default_alias=model.default_alias,
                    created_at=model.created_at,
                    versions=public_versions,
                    aliases=alias_map,
                )
            )
        return result

    @staticmethod
    def _row_public(model: ModelRow, row: ModelVersionRow, aliases: list[str]) -> ModelVersionPublic:
        return ModelVersionPublic(
            id=row.id,
            name=model.name,
            version=row.version,
            kind=model.kind,  # type: ignore[arg-type]  # checked on write
            source=row.source,  # type: ignore[arg-type]
            variant=row.variant,  # type: ignore[arg-type]
            base_version_id=row.base_version_id,
            artifact_uri=row.artifact_uri,
            checksum=row.checksum,
            upstream_url=row.upstream_url,
            upstream_model=row.upstream_model,
            api_key_env=row.api_key_env,
            metadata=row.meta,
            created_by=row.created_by,
            created_at=row.created_at,
            aliases=sorted(aliases),
        )
