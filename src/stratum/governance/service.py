"""API keys: issue, verify, list, revoke, and the bootstrap admin key.

Keys are ``sk-stm-`` + 40 URL-safe random characters (240 bits). Only a salted HMAC-SHA256 of a key
is stored. A slow password hash (bcrypt, argon2) protects low-entropy human passwords against
guessing; a 240-bit random key cannot be guessed however fast the hash is, so a slow hash would only
add latency to every request. The per-key salt still makes equal keys hash differently and rules out
precomputed tables across installations.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from stratum.errors import AuthenticationError, Conflict, InvalidRequest, NotFound
from stratum.governance import audit, repo
from stratum.governance.policy import check_networks
from stratum.governance.schemas import (
    ENDPOINTS,
    PLATFORM_ROLES,
    ROLES,
    ApiKeyPublic,
    KeyStatus,
    Limits,
    Principal,
    Tenant,
    plain,
)
from stratum.governance.tables import ApiKeyRow, OrgRow, ProjectRow
from stratum.governance.tenancy import find_org, find_project
from stratum.storage import Database, advisory_lock, utcnow

# Principal and ApiKeyPublic are re-exported: adapters import them alongside the service.
__all__ = ["KEY_PREFIX", "ApiKeyPublic", "KeyService", "Principal", "hash_key", "mask_key"]

KEY_PREFIX = "sk-stm-"
# 30 random bytes encode to exactly 40 URL-safe base64 characters.
_SECRET_BYTES = 30
# Characters of a key stored in clear to find its row (and shown in listings): "sk-stm-" + 5 random.
LOOKUP_CHARS = 12
# Keys longer than any we issue or accept are rejected before hashing.
_MAX_KEY_LENGTH = 256
# An operator-configured admin key shorter than this is too easy to guess.
MIN_CONFIGURED_KEY_LENGTH = 16
# last_used_at is informational: updating it at most once a minute avoids a write per request.
_TOUCH_INTERVAL = timedelta(minutes=1)


def hash_key(plaintext: str, salt: str) -> str:
    return hmac.new(bytes.fromhex(salt), plaintext.encode("utf-8"), hashlib.sha256).hexdigest()


def mask_key(plaintext: str) -> str:
    """A key as it may appear in messages and logs: enough to recognise it, never enough to use it."""
    if len(plaintext) < 24:
        return "***"
    return f"{plaintext[:8]}***{plaintext[-4:]}"


def _status(row: ApiKeyRow, now: datetime) -> KeyStatus:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def _limits(row: ApiKeyRow | OrgRow | ProjectRow) -> Limits:
    cost_budget = row.cost_budget if isinstance(row, ProjectRow) else None
    return Limits(rpm=row.rpm, tpm=row.tpm, token_budget=row.token_budget, cost_budget=cost_budget)


def _public(row: ApiKeyRow, now: datetime, session: Session | None = None) -> ApiKeyPublic:
    org = project = None
    if session is not None and row.org_id is not None:
        org_row = repo.get_org(session, row.org_id)
        org = org_row.name if org_row else None
        if row.project_id is not None and (project_row := repo.get_project(session, row.project_id)):
            project = f"{org}/{project_row.name}"
    return ApiKeyPublic(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        role=row.role,  # type: ignore[arg-type]  # checked on write
        status=_status(row, now),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        org=org,
        project=project,
        models=list(row.models or []),
        endpoints=list(row.endpoints or []),
        ip_allow=list(row.ip_allow or []),
        rpm=row.rpm,
        tpm=row.tpm,
        token_budget=row.token_budget,
    )


def _principal(session: Session, row: ApiKeyRow) -> Principal:
    org = project = None
    if row.org_id is not None and (org_row := repo.get_org(session, row.org_id)) is not None:
        org = Tenant(id=org_row.id, name=org_row.name, limits=_limits(org_row))
        if row.project_id is not None and (project_row := repo.get_project(session, row.project_id)):
            project = Tenant(
                id=project_row.id, name=f"{org_row.name}/{project_row.name}", limits=_limits(project_row)
            )
    return Principal(
        key_id=row.id,
        name=row.name,
        role=row.role,  # type: ignore[arg-type]  # checked on write
        org=org,
        project=project,
        models=tuple(row.models or ()),
        endpoints=tuple(row.endpoints or ()),
        ip_allow=tuple(row.ip_allow or ()),
        limits=_limits(row),
    )


def _check_scopes(*, models: list[str], endpoints: list[str], ip_allow: list[str]) -> None:
    if any(not m.strip() for m in models):
        raise InvalidRequest("model patterns must not be empty", param="models")
    unknown = [e for e in endpoints if e not in ENDPOINTS]
    if unknown:
        raise InvalidRequest(
            f"unknown endpoint {unknown[0]!r}; choose from {', '.join(ENDPOINTS)}", param="endpoints"
        )
    try:
        check_networks(ip_allow)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="ip_allow") from exc


def _matching(session: Session, plaintext: str) -> ApiKeyRow | None:
    """The row whose hash matches ``plaintext``, comparing in constant time."""
    found = None
    for row in repo.keys_with_prefix(session, plaintext[:LOOKUP_CHARS]):
        if hmac.compare_digest(hash_key(plaintext, row.salt), row.key_hash):
            found = row
    return found


class KeyService:
    """API keys. Serves: the gateway's auth dependency (``verify`` per request), the CLI/console
    (create/list/revoke) and server start-up (``ensure_admin_key``)."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    def create_key(
        self,
        *,
        name: str,
        role: str = "user",
        expires_at: datetime | None = None,
        project: str | None = None,
        models: list[str] | None = None,
        endpoints: list[str] | None = None,
        ip_allow: list[str] | None = None,
        limits: Limits | None = None,
        actor: str = audit.LOCAL_ACTOR,
    ) -> tuple[str, ApiKeyPublic]:
        """Issue a key. The plaintext is returned only here: show it once, it cannot be recovered.

        ``project`` is ``ORG/PROJECT`` (or just ``ORG`` for an org_admin key); without it the key is
        a platform key (role admin or user).
        """
        name = name.strip()
        if not 1 <= len(name) <= 128:
            raise InvalidRequest("A key name needs 1-128 characters.", param="name")
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}.", param="role")
        now = self._clock()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidRequest("expires_at must be timezone-aware.", param="expires_at")
            if expires_at <= now:
                raise InvalidRequest("expires_at must be in the future.", param="expires_at")
        if project is None and role not in PLATFORM_ROLES:
            raise InvalidRequest(f"a {role} key belongs to a project: give ORG/PROJECT", param="role")
        if project is not None and role in PLATFORM_ROLES:
            raise InvalidRequest(
                f"project keys have role org_admin, developer or viewer, not {role}", param="role"
            )
        scopes = {"models": plain(models), "endpoints": plain(endpoints), "ip_allow": plain(ip_allow)}
        _check_scopes(**scopes)
        plaintext = KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
        with self._db.session() as session:
            row = self._insert(session, plaintext, name=name, role=role, expires_at=expires_at)
            if project is not None:
                if "/" in project:
                    org_row, project_row = find_project(session, project)
                    row.project_id = project_row.id
                elif role == "org_admin":
                    org_row = find_org(session, project)
                else:
                    raise InvalidRequest(f"expected ORG/PROJECT, got {project!r}", param="project")
                row.org_id = org_row.id
            for field, value in scopes.items():
                setattr(row, field, value)
            if limits is not None:
                row.rpm, row.tpm, row.token_budget = limits.rpm, limits.tpm, limits.token_budget
            session.flush()
            # The key's id and scopes only: never its plaintext or hash.
            audit.append(
                session,
                actor=actor,
                action="key.create",
                target=row.id,
                org_id=row.org_id,
                project_id=row.project_id,
                detail={"name": name, "role": role, "expires_at": expires_at, **scopes},
            )
            return plaintext, _public(row, now, session)

    def verify(self, plaintext: str) -> Principal:
        """The principal a key acts as; AuthenticationError if it is unknown, revoked or expired."""
        if not LOOKUP_CHARS <= len(plaintext) <= _MAX_KEY_LENGTH:
            raise AuthenticationError(f"Incorrect API key provided: {mask_key(plaintext)}.")
        now = self._clock()
        # A read transaction: on SQLite verification never queues behind writers. Limits and
        # scopes are read on every request, so changes apply from the next one.
        with self._db.session(write=False) as session:
            row = _matching(session, plaintext)
            principal = _principal(session, row) if row is not None else None
        if row is None or principal is None:
            raise AuthenticationError(f"Incorrect API key provided: {mask_key(plaintext)}.")
        if row.revoked_at is not None:
            raise AuthenticationError(f"The API key {mask_key(plaintext)} has been revoked.")
        if row.expires_at is not None and row.expires_at <= now:
            raise AuthenticationError(
                f"The API key {mask_key(plaintext)} expired at {row.expires_at.isoformat()}."
            )
        not_since = now - _TOUCH_INTERVAL
        if row.last_used_at is None or row.last_used_at <= not_since:
            with self._db.session() as session:
                repo.touch(session, key_id=row.id, now=now, not_since=not_since)
        return principal

    def list_keys(self, *, org_id: str | None = None, project_id: str | None = None) -> list[ApiKeyPublic]:
        now = self._clock()
        with self._db.session(write=False) as session:
            rows = repo.list_keys(session, org_id=org_id, project_id=project_id)
            return [_public(row, now, session) for row in rows]

    def get_key(self, key_id: str) -> ApiKeyPublic:
        with self._db.session(write=False) as session:
            row = repo.get_key(session, key_id)
            if row is None:
                raise NotFound(f"No API key has the id {key_id!r}.", param="key")
            return _public(row, self._clock(), session)

    def revoke(self, key_id_or_prefix: str, *, actor: str = audit.LOCAL_ACTOR) -> ApiKeyPublic:
        """Revoke by key id, by the 12-character prefix shown in listings, or by the full key.

        Revoking a revoked key is not an error (retries are safe).
        """
        ident = key_id_or_prefix.strip()
        now = self._clock()
        with self._db.session() as session:
            row = repo.get_key(session, ident)
            if row is None:
                row = self._by_prefix(session, ident)
            if row.revoked_at is None:
                row.revoked_at = now
                audit.append(
                    session,
                    actor=actor,
                    action="key.revoke",
                    target=row.id,
                    org_id=row.org_id,
                    project_id=row.project_id,
                )
            return _public(row, now, session)

    def ensure_admin_key(self, configured: str | None) -> str | None:
        """Make sure the server can be administered; returns a new admin key's plaintext, or None.

        With ``configured`` (the operator's STRATUM_ADMIN_KEY) that key exists as an admin key after
        the call, created once and reused on every later start. Without it, an admin key is created
        only when no active one exists; its plaintext is returned so the server can show it once.
        """
        if configured is not None and len(configured) < MIN_CONFIGURED_KEY_LENGTH:
            raise InvalidRequest(
                f"The configured admin key must be at least {MIN_CONFIGURED_KEY_LENGTH} characters long.",
                param="admin_key",
            )
        now = self._clock()
        with self._db.session() as session:
            # Gateway workers starting together must not each create an admin key.
            advisory_lock(session, "governance.admin_key")
            if configured is None:
                if repo.active_admin_exists(session, now=now):
                    return None
                plaintext = KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
                self._insert(session, plaintext, name="admin", role="admin", expires_at=None)
                return plaintext
            row = _matching(session, configured)
            if row is None:
                self._insert(session, configured, name="admin (configured)", role="admin", expires_at=None)
            elif _status(row, now) != "active":
                # Re-enabling it silently would undo the revocation of a possibly leaked key.
                raise Conflict(
                    f"The configured admin key {mask_key(configured)} is {_status(row, now)}; "
                    "configure a new one.",
                    param="admin_key",
                )
            else:
                row.role = "admin"
            return None

    def _insert(
        self, session: Session, plaintext: str, *, name: str, role: str, expires_at: datetime | None
    ) -> ApiKeyRow:
        salt = secrets.token_bytes(16).hex()
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(6),
            name=name,
            prefix=plaintext[:LOOKUP_CHARS],
            salt=salt,
            key_hash=hash_key(plaintext, salt),
            role=role,
            created_at=self._clock(),
            expires_at=expires_at,
        )
        return repo.add_key(session, row)

    def _by_prefix(self, session: Session, ident: str) -> ApiKeyRow:
        if len(ident) > LOOKUP_CHARS:  # a full key was pasted: match it exactly
            match = _matching(session, ident)
            candidates = [match] if match else []
        else:
            candidates = list(repo.keys_with_prefix(session, ident))
        if not candidates:
            shown = mask_key(ident) if len(ident) > LOOKUP_CHARS else ident
            raise NotFound(f"No API key has the id or prefix {shown!r}.", param="key")
        if len(candidates) > 1:
            ids = ", ".join(row.id for row in candidates)
            raise Conflict(f"The prefix {ident!r} matches several keys ({ids}); use the key id.", param="key")
        return candidates[0]
