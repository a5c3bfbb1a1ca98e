"""Content-addressed Parquet files under ``$STRATUM_HOME/artifacts/datasets/objects``.

A version's rows are written once to ``objects/<hash[:2]>/<hash>.parquet``, where ``hash`` is the
sha256 of the format and the rows' canonical JSON (``formats.canonical_json``): two versions with the
same content share one file, and a file never changes after it is written. Writes go to a temporary
file in the same directory and are renamed into place, so a crash never leaves a half-written object
under its final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratum.data.formats import FIELDS, META_FIELDS, canonical_json

if TYPE_CHECKING:
    import pyarrow as pa


def content_hash(fmt: str, rows: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256(f"stratum-dataset/1 {fmt}\n".encode())
    for row in rows:
        digest.update(canonical_json(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _schema(fmt: str, rows: list[dict[str, Any]]) -> pa.Schema:
    import pyarrow as pa

    fields: list[pa.Field] = []
    if fmt == "chat":
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        fields.append(pa.field("messages", pa.list_(message)))
    else:
        fields.extend(pa.field(name, pa.string()) for name in FIELDS[fmt])
    types = {"split": pa.string(), "synthetic": pa.bool_(), "label": pa.string(), "confidence": pa.float64()}
    present = {key for row in rows for key in row}
    fields.extend(pa.field(name, types[name]) for name in META_FIELDS if name in present)
    return pa.schema(fields)


def to_table(fmt: str, rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    schema = _schema(fmt, rows)
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


def from_table(table: pa.Table) -> list[dict[str, Any]]:
    """Rows back as dicts, with absent meta fields left out (as they were written)."""
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for name in META_FIELDS:
            if name in row and row[name] is None:
                del row[name]
    return rows


class ObjectStore:
    """Serves: ``DatasetService`` (write once, read many)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / "objects" / digest[:2] / f"{digest}.parquet"

    def write(self, digest: str, fmt: str, rows: list[dict[str, Any]]) -> Path:
        import pyarrow.parquet as pq

        target = self.path(digest)
        if target.exists():
            return target  # content-addressed: the same bytes are already there
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".parquet")
        os.close(handle)
        try:
            pq.write_table(to_table(fmt, rows), temp, compression="zstd")
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return target

    def read(self, digest: str) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.path(digest))
