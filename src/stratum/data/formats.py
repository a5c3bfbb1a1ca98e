"""Dataset formats: reading JSONL / CSV / Parquet, detecting the format, validating and normalising rows.

Three formats, each a fixed set of fields (the columns of the stored Parquet file):

    chat          messages: [{"role": "system"|"user"|"assistant"|"tool", "content": str}, …]
                  (at least one user and one assistant message)
    instruction   instruction: str, input: str (may be empty), output: str
    preference    prompt: str, chosen: str, rejected: str

Rows may also carry the columns transforms add (``META_FIELDS``): ``split``, ``synthetic``, ``label``,
``confidence``. Other columns in an imported file are ignored (the import report names them).

Every problem is a ``RowError`` naming where it is (``line 3`` of a JSONL or CSV file, ``row 3`` of a
Parquet file, 1-based) and the field (``messages[1].role``).
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stratum.errors import InvalidRequest

Format = Literal["chat", "instruction", "preference"]
FORMATS: tuple[Format, ...] = ("chat", "instruction", "preference")
FIELDS: dict[str, tuple[str, ...]] = {
    "chat": ("messages",),
    "instruction": ("instruction", "input", "output"),
    "preference": ("prompt", "chosen", "rejected"),
}
META_FIELDS = ("split", "synthetic", "label", "confidence")
ROLES = ("system", "user", "assistant", "tool")
# ShareGPT-style aliases accepted on import ("conversations" of {"from", "value"}).
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "tool": "tool",
}


@dataclass(frozen=True)
class RowError:
    where: str  # "line 3" / "row 3"
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}, field '{self.field}': {self.message}"


@dataclass
class SourceRow:
    where: str
    value: Any


def read_source(path: Path) -> Iterator[SourceRow]:
    """Raw records of a file with where each came from; unparsable records become ``value=RowError``."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        yield from _read_jsonl(path)
    elif suffix in (".csv", ".tsv"):
        yield from _read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
    elif suffix in (".parquet", ".pq"):
        yield from _read_parquet(path)
    else:
        raise InvalidRequest(
            f"{path.name}: unknown file type {suffix or '(none)'!r}; use .jsonl, .csv or .parquet",
            param="file",
        )


def _read_jsonl(path: Path) -> Iterator[SourceRow]:
    # utf-8-sig: files saved by Windows tools often start with a BOM.
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                yield SourceRow(where, json.loads(line))
            except json.JSONDecodeError as exc:
                yield SourceRow(where, RowError(where, "(json)", f"not valid JSON: {exc.msg}"))


def _read_csv(path: Path, *, delimiter: str) -> Iterator[SourceRow]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        for record in reader:
            # line_num is the physical line where the record ended (quoted fields may span lines).
            where = f"line {reader.line_num}"
            value: dict[str, Any] = {}
            for key, cell in record.items():
                if key is None:
                    continue
                text = cell
                if key in ("messages", "conversations") and text and text.lstrip().startswith("["):
                    try:
                        value[key] = json.loads(text)
                        continue
                    except json.JSONDecodeError:
                        pass
                value[key] = text
            yield SourceRow(where, value)


def _read_parquet(path: Path) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise InvalidRequest(f"{path.name}: not a readable Parquet file: {exc}", param="file") from exc
    for number, value in enumerate(table.to_pylist(), start=1):
        yield SourceRow(f"row {number}", value)


def detect_format(record: dict[str, Any]) -> Format | None:
    keys = set(record)
    if "messages" in keys or "conversations" in keys:
        return "chat"
    if {"prompt", "chosen", "rejected"} <= keys:
        return "preference"
    if {"instruction", "output"} <= keys:
        return "instruction"
    return None


def _text(value: Any, where: str, field: str, errors: list[RowError], *, required: bool = True) -> str:
    if value is None:
        if required:
            errors.append(RowError(where, field, "missing"))
        return ""
    if not isinstance(value, str):
        errors.append(RowError(where, field, f"must be a string, got {type(value).__name__}"))
        return ""
    if required and not value.strip():
        errors.append(RowError(where, field, "empty"))
    return value


def _messages(value: Any, where: str, errors: list[RowError]) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        errors.append(RowError(where, "messages", "must be a non-empty list of {role, content}"))
        return []
    out: list[dict[str, str]] = []
    for index, message in enumerate(value):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            errors.append(RowError(where, field, "must be an object with role and content"))
            continue
        role = message.get("role", message.get("from"))
        role = _SHAREGPT_ROLES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            errors.append(
                RowError(where, f"{field}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
            )
        content = message.get("content", message.get("value"))
        text = _text(content, where, f"{field}.content", errors, required=role != "system")
        out.append({"role": str(role), "content": text})
    roles = {m["role"] for m in out}
    if out and "user" not in roles:
        errors.append(RowError(where, "messages", "needs at least one user message"))
    if out and "assistant" not in roles:
        errors.append(RowError(where, "messages", "needs at least one assistant message"))
    return out


def normalise_row(record: Any, fmt: Format, where: str) -> tuple[dict[str, Any] | None, list[RowError]]:
    """The row in canonical form (format fields in order, then meta fields), or the errors found."""
    if isinstance(record, RowError):
        return None, [record]
    if not isinstance(record, dict):
        return None, [RowError(where, "(row)", f"must be an object, got {type(record).__name__}")]
    errors: list[RowError] = []
    row: dict[str, Any] = {}
    if fmt == "chat":
        row["messages"] = _messages(record.get("messages", record.get("conversations")), where, errors)
    elif fmt == "instruction":
        row["instruction"] = _text(record.get("instruction"), where, "instruction", errors)
        raw_input = record.get("input")
        row["input"] = _text("" if raw_input is None else raw_input, where, "input", errors, required=False)
        row["output"] = _text(record.get("output"), where, "output", errors)
    else:
        for field in FIELDS["preference"]:
            row[field] = _text(record.get(field), where, field, errors)
        if not errors and row["chosen"] == row["rejected"]:
            errors.append(RowError(where, "rejected", "identical to chosen"))
    meta, meta_errors = _meta(record, where)
    errors.extend(meta_errors)
    if errors:
        return None, errors
    row.update(meta)
    return row, []


def _meta(record: dict[str, Any], where: str) -> tuple[dict[str, Any], list[RowError]]:
    meta: dict[str, Any] = {}
    errors: list[RowError] = []
    split = record.get("split")
    if split not in (None, ""):
        if split not in ("train", "validation", "test"):
            errors.append(RowError(where, "split", f"must be train, validation or test, got {split!r}"))
        else:
            meta["split"] = split
    synthetic = record.get("synthetic")
    if synthetic not in (None, ""):
        if isinstance(synthetic, str):
            synthetic = synthetic.strip().lower() in ("1", "true", "yes")
        meta["synthetic"] = bool(synthetic)
    if record.get("label") not in (None, ""):
        meta["label"] = str(record["label"])
    confidence = record.get("confidence")
    if confidence not in (None, ""):
        try:
            meta["confidence"] = float(confidence)
        except (TypeError, ValueError):
            errors.append(RowError(where, "confidence", f"must be a number, got {confidence!r}"))
    return meta, errors


def row_texts(row: dict[str, Any], fmt: str) -> list[str]:
    """Every text of a row, in field order (what cleaning, filters and dedup look at)."""
    if fmt == "chat":
        return [m["content"] for m in row["messages"]]
    return [row[field] for field in FIELDS[fmt]]


def row_text(row: dict[str, Any], fmt: str) -> str:
    return "\n".join(row_texts(row, fmt))


def map_texts(row: dict[str, Any], fmt: str, fn: Any) -> dict[str, Any]:
    """A copy of ``row`` with ``fn`` applied to every text field."""
    out = dict(row)
    if fmt == "chat":
        out["messages"] = [{"role": m["role"], "content": fn(m["content"])} for m in row["messages"]]
    else:
        for field in FIELDS[fmt]:
            out[field] = fn(row[field])
    return out


def canonical_json(row: dict[str, Any]) -> str:
    """One line per row for hashing, diffing and export: sorted keys, Chinese kept as is, NFC."""
    text = json.dumps(row, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return unicodedata.normalize("NFC", text)


def write_jsonl(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    for row in rows:
        buffer.write(json.dumps(row, ensure_ascii=False) + "\n")
    return buffer.getvalue()
