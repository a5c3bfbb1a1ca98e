"""Public governance types: the authenticated principal and API keys as listed (never their hashes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

Role = Literal["admin", "user"]
ROLES: tuple[Role, ...] = ("admin", "user")
KeyStatus = Literal["active", "revoked", "expired"]


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, once its API key is verified."""

    key_id: str
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class ApiKeyPublic(BaseModel):
    """An API key as listed: ``prefix`` identifies it to humans; the secret is never shown again."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    prefix: str
    role: Role
    status: KeyStatus
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
