"""The audit log on both backends: chained appends from every service, tamper detection, concurrency."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from stratum.errors import Conflict
from stratum.governance import KeyService, PolicyRule, PolicyService, TenancyService, UsageEntry, UsageService
from stratum.governance.audit import GENESIS_HASH, AuditService, append
from stratum.governance.schemas import LimitsUpdate, OrgCreate, ProjectCreate
from stratum.storage import Database


def _populate(db: Database) -> None:
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="acme"), actor="cli:alice")
    project = tenancy.create_project("acme", ProjectCreate(name="bot"), actor="cli:alice")
    tenancy.set_project_limits("acme/bot", LimitsUpdate(token_budget=1000), actor="key_admin")
    keys = KeyService(db)
    _, key = keys.create_key(name="机器人密钥", role="developer", project="acme/bot", actor="key_admin")
    PolicyService(db).put_rule(PolicyRule(name="no-gpt", effect="deny", models=["gpt-*"]), actor="key_admin")
    UsageService(db).record(
        [
            UsageEntry(
                request_id="req_1",
                key_id=key.id,
                org_id=project.org_id,
                project_id=project.id,
                model="qwen-中文",
                endpoint="chat",
                prompt_tokens=12,
                completion_tokens=3,
            )
        ]
    )
    keys.revoke(key.id, actor="key_admin")


def test_every_change_is_chained_and_verifies(db: Database) -> None:
    _populate(db)
    audit = AuditService(db)
    entries = list(reversed(audit.list_entries()))
    assert [e.action for e in entries] == [
        "org.create",
        "project.create",
        "project.update",
        "key.create",
        "policy.put",
        "inference",
        "key.revoke",
    ]
    assert [e.id for e in entries] == list(range(1, 8))
    assert entries[3].detail["name"] == "机器人密钥"
    inference = entries[5]
    assert inference.detail == {
        "request_id": "req_1",
        "model": "qwen-中文",
        "status": 200,
        "prompt_tokens": 12,
        "completion_tokens": 3,
    }
    # Never a key's plaintext or hash in the log.
    assert all("sk-" not in str(e.detail) and "hash" not in e.detail for e in entries)
    result = audit.verify()
    assert result.ok and result.count == 7
    assert [e.action for e in audit.list_entries(actor="cli:alice")] == ["project.create", "org.create"]


def test_an_empty_log_verifies(db: Database) -> None:
    assert AuditService(db).verify().model_dump() == {
        "ok": True,
        "count": 0,
        "broken_id": None,
        "reason": None,
        "checkpoint_id": None,
    }


def test_an_edited_row_is_named(db: Database) -> None:
    _populate(db)
    with db.session() as session:
        session.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE id = 4"))
    result = AuditService(db).verify()
    assert not result.ok and result.broken_id == 4 and result.count == 3


def test_a_rehashed_edit_breaks_the_next_row(db: Database) -> None:
    _populate(db)
    with db.session() as session:
        session.execute(text("UPDATE audit_log SET hash = :h WHERE id = 2"), {"h": "f" * 64})
    result = AuditService(db).verify()
    assert not result.ok and result.broken_id == 2


def test_a_deleted_row_is_named(db: Database) -> None:
    _populate(db)
    with db.session() as session:
        session.execute(text("DELETE FROM audit_log WHERE id = 3"))
    result = AuditService(db).verify()
    assert not result.ok and result.broken_id == 4 and "missing" in (result.reason or "")


def test_a_change_that_fails_leaves_no_entry(db: Database) -> None:
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="acme"))
    with pytest.raises(Conflict):
        tenancy.create_org(OrgCreate(name="acme"))
    assert [e.action for e in AuditService(db).list_entries()] == ["org.create"]


def test_concurrent_appends_stay_linear(db: Database) -> None:
    threads_n, per_thread = 8, 10
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(per_thread):
                with db.session() as session:
                    append(session, actor=f"t{n}", action="test", target=str(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = AuditService(db).verify()
    assert result.ok and result.count == threads_n * per_thread
    first = AuditService(db).list_entries(limit=threads_n * per_thread)[-1]
    assert first.id == 1
    with db.session(write=False) as session:
        assert session.scalar(text("SELECT prev_hash FROM audit_log WHERE id = 1")) == GENESIS_HASH
