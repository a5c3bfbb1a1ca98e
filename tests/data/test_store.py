"""Content hashes and the object store: stable, order-sensitive, written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratum.data.store import ObjectStore, content_hash, from_table

ROWS = [
    {"instruction": "你好", "input": "", "output": "您好"},
    {"instruction": "再见", "input": "", "output": "再会"},
]


def test_hash_is_over_normalised_content() -> None:
    same = [dict(reversed(list(r.items()))) for r in ROWS]
    assert content_hash("instruction", ROWS) == content_hash("instruction", same)
    assert content_hash("instruction", ROWS) != content_hash("instruction", ROWS[::-1])
    assert content_hash("instruction", ROWS) != content_hash("chat", ROWS)
    # NFC: a decomposed é and a precomposed é are the same text.
    assert content_hash("instruction", [{"instruction": "caf\u00e9"}]) == content_hash(
        "instruction", [{"instruction": "cafe\u0301"}]
    )


def test_write_is_atomic_and_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ObjectStore(tmp_path / "datasets")
    digest = content_hash("instruction", ROWS)
    path = store.write(digest, "instruction", ROWS)
    assert from_table(store.read(digest)) == ROWS
    mtime = path.stat().st_mtime_ns
    assert store.write(digest, "instruction", ROWS) == path and path.stat().st_mtime_ns == mtime

    import pyarrow.parquet as pq

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    other = content_hash("instruction", ROWS[:1])
    with pytest.raises(OSError, match="disk full"):
        store.write(other, "instruction", ROWS[:1])
    assert not store.path(other).exists()
    assert [p.name for p in store.path(other).parent.glob(".tmp-*")] == []
