"""Governance: API keys and the principals they authenticate."""

from stratum.governance.schemas import ApiKeyPublic, Principal
from stratum.governance.service import KeyService

__all__ = ["ApiKeyPublic", "KeyService", "Principal"]
