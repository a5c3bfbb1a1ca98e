"""Database: engine set-up per dialect, transactions, time zones, concurrency."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, MetaData, String, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stratum.storage import POSTGRES_INSTALL_HINT, Database, UTCDateTime, advisory_lock, utcnow
from stratum.storage.db import JSONDocument


class _Scratch(DeclarativeBase):
    """A throwaway table, on its own metadata so the real schema stays untouched."""

    metadata = MetaData()


class Note(_Scratch):
    __tablename__ = "scratch_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    doc: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)


@pytest.fixture
def notes(db: Database) -> Database:
    _Scratch.metadata.create_all(db.engine)
    return db


def _count(db: Database) -> int:
    with db.session(write=False) as session:
        return len(session.scalars(select(Note)).all())


def test_session_commits_on_success(notes: Database) -> None:
    with notes.session() as session:
        session.add(Note(body="一", at=utcnow()))
    assert _count(notes) == 1


def test_session_rolls_back_on_exception(notes: Database) -> None:
    with pytest.raises(RuntimeError, match="boom"), notes.session() as session:
        session.add(Note(body="一", at=utcnow()))
        session.flush()
        raise RuntimeError("boom")
    assert _count(notes) == 0


def test_datetimes_come_back_aware_in_utc(notes: Database) -> None:
    shanghai = timezone(timedelta(hours=8))
    written = datetime(2025, 3, 1, 20, 0, tzinfo=shanghai)
    with notes.session() as session:
        session.add(Note(body="北京时间晚上八点", at=written))
    with notes.session(write=False) as session:
        note = session.scalars(select(Note)).one()
        # Comparisons against the column go through the same conversion.
        later = session.scalars(select(Note).where(Note.at > written - timedelta(seconds=1))).all()
    assert note.at == written
    assert note.at.tzinfo == UTC
    assert note.at.hour == 12
    assert len(later) == 1


def test_naive_datetimes_are_refused(notes: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), notes.session() as session:
        session.add(Note(body="x", at=datetime(2025, 1, 1)))
        session.flush()


def test_json_keeps_chinese_text(notes: Database) -> None:
    doc = {"描述": "中文模型", "层数": [1, 2]}
    with notes.session() as session:
        session.add(Note(body="json", at=utcnow(), doc=doc))
    with notes.session(write=False) as session:
        assert session.scalars(select(Note.doc)).one() == doc


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError), db.session() as session:
        session.execute(
            text(
                "INSERT INTO model_versions (model_id, version, source, created_by, created_at) "
                "VALUES (999, 1, 'demo', 'me', CURRENT_TIMESTAMP)"
            )
        )


def test_ping(db: Database) -> None:
    assert db.ping() is True


def test_ping_is_false_when_the_server_is_unreachable() -> None:
    # Port 1 on localhost refuses connections immediately.
    database = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert database.ping() is False
    database.dispose()


def test_advisory_lock_is_usable_in_a_transaction(db: Database) -> None:
    with db.session() as session:
        advisory_lock(session, "tests.lock")
        advisory_lock(session, "tests.lock")  # re-entrant within one transaction


def test_concurrent_read_then_write_transactions_do_not_lock(notes: Database) -> None:
    """The classic SQLite failure: read, then write, while other threads do the same."""

    def work(worker: int) -> None:
        for i in range(10):
            with notes.session() as session:
                seen = len(session.scalars(select(Note.id)).all())
                session.add(Note(body=f"{worker}-{i}-{seen}", at=utcnow()))

    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(work, w) for w in range(6)]:
            future.result()
    assert _count(notes) == 60


def test_readers_do_not_wait_for_a_writer(notes: Database) -> None:
    writing = threading.Event()
    release = threading.Event()

    def hold_write_lock() -> None:
        with notes.session() as session:
            session.add(Note(body="slow", at=utcnow()))
            session.flush()
            writing.set()
            release.wait(10)

    writer = threading.Thread(target=hold_write_lock)
    writer.start()
    try:
        assert writing.wait(10)
        started = time.monotonic()
        assert _count(notes) == 0  # the uncommitted row is invisible, and we did not block
        assert time.monotonic() - started < 2
    finally:
        release.set()
        writer.join()
    assert _count(notes) == 1


def test_sqlite_settings(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.db'}")
    assert (tmp_path / "nested" / "dir").is_dir()  # the parent directory is created
    with database.session(write=False) as session:
        assert session.scalar(text("PRAGMA journal_mode")) == "wal"
        assert session.scalar(text("PRAGMA foreign_keys")) == 1
        assert session.scalar(text("PRAGMA busy_timeout")) >= 1000
    assert database.dialect == "sqlite"
    database.dispose()


def test_in_memory_sqlite_works_across_threads() -> None:
    with Database("sqlite://") as database:
        database.migrate()
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(database.ping).result()


def test_postgres_urls_default_to_psycopg() -> None:
    database = Database("postgresql://user:secret@db.example/stratum")
    assert database.url.drivername == "postgresql+psycopg"
    assert "secret" not in repr(database)
    database.dispose()


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(ImportError, match=POSTGRES_INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        Database("postgresql+psycopg://u@localhost/x")


def test_unsupported_url() -> None:
    with pytest.raises(ValueError, match="Unsupported database URL"):
        Database("mysql://u@localhost/x")
