"""KeyService on both backends: issue, verify, expire, revoke, bootstrap the admin key."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from stratum.errors import AuthenticationError, Conflict, InvalidRequest, NotFound
from stratum.governance import KeyService, Principal
from stratum.governance.tables import ApiKeyRow
from stratum.storage import Database, utcnow


class Clock:
    """A settable clock, so expiry and last-used throttling are tested without sleeping."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(db: Database, clock: Clock) -> KeyService:
    return KeyService(db, clock=clock)


def _row(db: Database, key_id: str) -> ApiKeyRow:
    with db.session(write=False) as session:
        return session.scalars(select(ApiKeyRow).where(ApiKeyRow.id == key_id)).one()


def test_create_key_format_and_storage(keys: KeyService, db: Database) -> None:
    plaintext, public = keys.create_key(name="测试密钥")
    assert plaintext.startswith("sk-stm-") and len(plaintext) == 47
    assert public.id.startswith("key_") and len(public.id) == 16
    assert public.prefix == plaintext[:12]
    assert public.name == "测试密钥" and public.role == "user" and public.status == "active"
    dumped = public.model_dump()
    assert "key_hash" not in dumped and "salt" not in dumped
    row = _row(db, public.id)
    assert plaintext not in (row.key_hash, row.salt, row.prefix)
    # Two keys never share a salt, so equal secrets would still hash differently.
    _, other = keys.create_key(name="other")
    assert _row(db, other.id).salt != row.salt


def test_verify(keys: KeyService) -> None:
    plaintext, public = keys.create_key(name="ci", role="admin")
    principal = keys.verify(plaintext)
    assert principal == Principal(key_id=public.id, name="ci", role="admin")
    assert principal.is_admin


@pytest.mark.parametrize("attempt", ["", "sk-stm-", "nonsense", "x" * 300])
def test_verify_rejects_garbage(keys: KeyService, attempt: str) -> None:
    with pytest.raises(AuthenticationError, match="Incorrect API key provided"):
        keys.verify(attempt)


def test_verify_rejects_a_wrong_key_with_a_known_prefix_without_echoing_it(keys: KeyService) -> None:
    plaintext, _ = keys.create_key(name="ci")
    wrong = plaintext[:-6] + "abcdef"
    with pytest.raises(AuthenticationError, match="Incorrect API key provided") as error:
        keys.verify(wrong)
    assert wrong not in error.value.message
    assert error.value.status_code == 401 and error.value.code == "invalid_api_key"


def test_expiry(keys: KeyService, clock: Clock) -> None:
    plaintext, public = keys.create_key(name="temp", expires_at=clock.now + timedelta(hours=1))
    assert keys.verify(plaintext).key_id == public.id
    clock.advance(hours=2)
    with pytest.raises(AuthenticationError, match="expired") as error:
        keys.verify(plaintext)
    assert plaintext not in error.value.message
    assert keys.list_keys()[0].status == "expired"


def test_expiry_must_be_aware_and_in_the_future(keys: KeyService, clock: Clock) -> None:
    with pytest.raises(InvalidRequest, match="timezone"):
        keys.create_key(name="k", expires_at=datetime(2099, 1, 1))
    with pytest.raises(InvalidRequest, match="future"):
        keys.create_key(name="k", expires_at=clock.now - timedelta(seconds=1))


def test_create_key_validation(keys: KeyService) -> None:
    with pytest.raises(InvalidRequest, match="role"):
        keys.create_key(name="k", role="root")
    with pytest.raises(InvalidRequest, match="name"):
        keys.create_key(name="  ")


def test_last_used_is_written_at_most_once_a_minute(keys: KeyService, db: Database, clock: Clock) -> None:
    plaintext, public = keys.create_key(name="busy")
    assert _row(db, public.id).last_used_at is None
    keys.verify(plaintext)
    first = _row(db, public.id).last_used_at
    assert first == clock.now
    clock.advance(seconds=30)
    keys.verify(plaintext)
    assert _row(db, public.id).last_used_at == first
    clock.advance(seconds=31)
    keys.verify(plaintext)
    assert _row(db, public.id).last_used_at == clock.now


def test_revoke_by_id_prefix_or_full_key(keys: KeyService) -> None:
    for how in ("id", "prefix", "key"):
        plaintext, public = keys.create_key(name=how)
        ident = {"id": public.id, "prefix": public.prefix, "key": plaintext}[how]
        revoked = keys.revoke(ident)
        assert revoked.status == "revoked" and revoked.revoked_at is not None
        with pytest.raises(AuthenticationError, match="revoked"):
            keys.verify(plaintext)
        assert keys.revoke(ident).revoked_at == revoked.revoked_at  # idempotent


def test_revoke_unknown(keys: KeyService) -> None:
    keys.create_key(name="k")
    with pytest.raises(NotFound):
        keys.revoke("key_000000000000")
    with pytest.raises(NotFound) as error:
        keys.revoke("sk-stm-" + "z" * 40)
    assert "z" * 40 not in error.value.message


def test_list_keys(keys: KeyService, clock: Clock) -> None:
    assert keys.list_keys() == []
    _, first = keys.create_key(name="a")
    clock.advance(seconds=1)
    _, second = keys.create_key(name="b", role="admin")
    keys.revoke(first.id)
    listed = keys.list_keys()
    assert [(k.id, k.status) for k in listed] == [(first.id, "revoked"), (second.id, "active")]


def test_ensure_admin_key_generates_once(keys: KeyService) -> None:
    plaintext = keys.ensure_admin_key(None)
    assert plaintext is not None and keys.verify(plaintext).role == "admin"
    assert keys.ensure_admin_key(None) is None
    keys.revoke(plaintext)
    replacement = keys.ensure_admin_key(None)  # no active admin key left: make a new one
    assert replacement is not None and replacement != plaintext


def test_ensure_admin_key_with_a_configured_key(keys: KeyService) -> None:
    configured = "sk-stm-operator-chosen-secret"
    assert keys.ensure_admin_key(configured) is None
    assert keys.ensure_admin_key(configured) is None  # not duplicated on every start
    assert len(keys.list_keys()) == 1
    assert keys.verify(configured).role == "admin"


def test_ensure_admin_key_promotes_an_existing_user_key(keys: KeyService) -> None:
    plaintext, _ = keys.create_key(name="was user")
    keys.ensure_admin_key(plaintext)
    assert keys.verify(plaintext).role == "admin"
    assert len(keys.list_keys()) == 1


def test_ensure_admin_key_refuses_a_revoked_or_short_key(keys: KeyService) -> None:
    configured = "sk-stm-operator-chosen-secret"
    keys.ensure_admin_key(configured)
    keys.revoke(configured)
    with pytest.raises(Conflict, match="revoked") as error:
        keys.ensure_admin_key(configured)
    assert configured not in error.value.message
    with pytest.raises(InvalidRequest, match="at least"):
        keys.ensure_admin_key("short")


def test_keys_sharing_a_prefix_are_told_apart(keys: KeyService) -> None:
    first, second = "sk-stm-shared-one-secret", "sk-stm-shared-two-secret"
    keys.ensure_admin_key(first)
    keys.ensure_admin_key(second)
    assert keys.verify(first).key_id != keys.verify(second).key_id
    with pytest.raises(Conflict, match="several keys"):
        keys.revoke(first[:12])
