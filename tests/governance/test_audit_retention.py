"""Audit retention and the batched writer: prune behind a checkpoint, nothing lost on close."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text, update

from stratum.errors import Conflict
from stratum.governance.audit import AuditService, append, entry_hash
from stratum.governance.audit_writer import AuditEvent, AuditWriter
from stratum.governance.tables import AuditCheckpointRow, AuditRow, UsageRow
from stratum.governance.usage import UsageEntry
from stratum.storage import Database, utcnow


def _entries(db: Database, n: int, *, age: timedelta = timedelta(0)) -> None:
    with db.session() as session:
        for i in range(n):
            row = append(session, actor="t", action="test", target=f"中文-{i}")
            row.at = row.at - age
            # The hash covers ``at``: recompute it as if the entry had been written then.
            row.hash = entry_hash(row)
            session.flush()


def test_prune_keeps_verify_working(db: Database) -> None:
    _entries(db, 5, age=timedelta(days=40))
    _entries(db, 3)
    audit = AuditService(db)
    result = audit.prune(before=utcnow() - timedelta(days=30), actor="cli:ops")
    assert result.pruned == 5 and result.through_id == 5
    verified = audit.verify()
    assert verified.ok and verified.checkpoint_id == 5 and verified.count == 4  # 3 + the prune entry
    assert audit.list_entries()[0].action == "audit.prune"
    assert audit.prune(before=utcnow() - timedelta(days=30)).pruned == 0
    _entries(db, 2)
    assert audit.verify().ok


def test_an_edited_checkpoint_is_detected(db: Database) -> None:
    _entries(db, 4, age=timedelta(days=40))
    _entries(db, 1)
    AuditService(db).prune(before=utcnow() - timedelta(days=30))
    with db.session() as session:
        session.execute(update(AuditCheckpointRow).values(through_hash="f" * 64))
    result = AuditService(db).verify()
    assert not result.ok


def test_prune_refuses_to_destroy_a_broken_chain(db: Database) -> None:
    _entries(db, 4, age=timedelta(days=40))
    with db.session() as session:
        session.execute(text("UPDATE audit_log SET target = 'edited' WHERE id = 2"))
    with pytest.raises(Conflict, match="broken at entry 2"):
        AuditService(db).prune(before=utcnow())
    with db.session(write=False) as session:
        assert session.scalar(text("SELECT count(*) FROM audit_log")) == 4


def _usage(i: int) -> UsageEntry:
    return UsageEntry(
        request_id=f"req_{i}",
        key_id="key_x",
        org_id=None,
        project_id=None,
        model="qwen-中文",
        endpoint="chat",
        prompt_tokens=i,
        completion_tokens=1,
        guard={"actions": ["mask"], "prompt_pii": {"phone": 1}} if i % 2 else None,
    )


def test_writer_batches_from_many_threads_and_flushes_on_close(db: Database) -> None:
    batches: list[int] = []
    writer = AuditWriter(db, max_batch=50, interval_s=0.2)
    original = writer._write

    def counting(session, batch):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        original(session, batch)

    writer._write = counting
    threads = [
        threading.Thread(target=lambda n=n: [writer.submit(_usage(n * 100 + i)) for i in range(40)])
        for n in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.submit(
        AuditEvent(actor="key_x", action="guard.block", target="chat", detail={"rule": "guard.words"})
    )
    writer.close()  # nothing lost: every queued item is written before close returns
    with db.session(write=False) as session:
        assert session.query(UsageRow).count() == 200
        assert session.query(AuditRow).count() == 201
    assert sum(batches) == 201 and len(batches) < 201 / 2  # batched, not one transaction each
    result = AuditService(db).verify()
    assert result.ok and result.count == 201
    actions = [e.action for e in AuditService(db).list_entries(limit=500)]
    assert actions.count("inference") == 200 and actions[0] == "guard.block"
    guarded = [e for e in AuditService(db).list_entries(limit=500) if "guard" in e.detail]
    assert len(guarded) == 100 and guarded[0].detail["guard"]["prompt_pii"] == {"phone": 1}
    # After close, a straggler is written synchronously rather than lost.
    writer.submit(_usage(999))
    with db.session(write=False) as session:
        assert session.query(UsageRow).count() == 201


def test_flush_waits_for_what_was_submitted(db: Database) -> None:
    writer = AuditWriter(db, interval_s=5.0)  # a long batching window: flush must not wait for it
    try:
        writer.submit(_usage(1))
        assert writer.flush(timeout_s=2.0)
        with db.session(write=False) as session:
            assert session.query(UsageRow).count() == 1
    finally:
        writer.close()
