"""The model registry: models, numbered versions, aliases and their history."""

from stratum.registry.schemas import AliasEventPublic, ModelPublic, ModelVersionPublic, parse_ref
from stratum.registry.service import RegistryService

__all__ = ["AliasEventPublic", "ModelPublic", "ModelVersionPublic", "RegistryService", "parse_ref"]
