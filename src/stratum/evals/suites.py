"""Evaluation suites read from JSONL, one item per line, the kind told by the fields present:

    generation        {"id"?, "prompt" | "messages", "reference" | "references" | "answer"}
    multiple_choice   {"id"?, "question", "choices": ["…", …], "answer": "B" | 1}
    perplexity        {"id"?, "text"}

A suite holds one kind; a line of another kind, or missing fields, is an error naming the line.
The suite's hash (of its normalised items) is stored with every run, so two runs are only compared
when they answered the same items.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stratum.errors import InvalidRequest

SuiteKind = Literal["generation", "multiple_choice", "perplexity"]
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Item:
    id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    references: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    answer_index: int | None = None
    text: str = ""


@dataclass(frozen=True)
class Suite:
    name: str
    kind: SuiteKind
    items: tuple[Item, ...]

    @property
    def digest(self) -> str:
        payload = json.dumps(
            [[i.id, i.messages, i.references, i.choices, i.answer_index, i.text] for i in self.items],
            ensure_ascii=False,
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_suite(path: Path, *, name: str | None = None) -> Suite:
    if not path.is_file():
        raise InvalidRequest(f"suite file {path} does not exist", param="suite")
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidRequest(
                f"{path.name} line {number}: not JSON ({error.msg})", param="suite"
            ) from None
        if not isinstance(row, dict):
            raise InvalidRequest(f"{path.name} line {number}: expected a JSON object", param="suite")
        rows.append((number, row))
    return parse_suite(rows, name=name or path.stem, source=path.name)


def parse_suite(rows: Sequence[tuple[int, dict[str, Any]]], *, name: str, source: str = "suite") -> Suite:
    if not rows:
        raise InvalidRequest(f"{source}: the suite has no items", param="suite")
    kind = _kind(rows[0][1])
    items = []
    for number, row in rows:
        where = f"{source} line {number}"
        if _kind(row) != kind:
            raise InvalidRequest(f"{where}: a {_kind(row)} item in a {kind} suite", param="suite")
        items.append(_item(kind, row, default_id=str(number), where=where))
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise InvalidRequest(f"{source}: item ids must be unique", param="suite")
    return Suite(name=name, kind=kind, items=tuple(items))


def _kind(row: dict[str, Any]) -> SuiteKind:
    if "choices" in row:
        return "multiple_choice"
    if "text" in row and "prompt" not in row and "messages" not in row:
        return "perplexity"
    return "generation"


def _item(kind: SuiteKind, row: dict[str, Any], *, default_id: str, where: str) -> Item:
    item_id = str(row.get("id", default_id))
    if kind == "perplexity":
        return Item(id=item_id, text=_string(row, "text", where))
    if kind == "multiple_choice":
        choices = row["choices"]
        if not isinstance(choices, list) or len(choices) < 2 or len(choices) > len(LETTERS):
            raise InvalidRequest(
                f"{where}: field 'choices' must list 2-{len(LETTERS)} options", param="suite"
            )
        return Item(
            id=item_id,
            messages=[{"role": "user", "content": _mc_prompt(_string(row, "question", where), choices)}],
            choices=tuple(str(c) for c in choices),
            answer_index=_answer_index(row.get("answer"), len(choices), where),
        )
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and "content" in m for m in messages
        ):
            raise InvalidRequest(f"{where}: field 'messages' must be a list of chat messages", param="suite")
    else:
        messages = [{"role": "user", "content": _string(row, "prompt", where)}]
    references = row.get("references", row.get("reference", row.get("answer")))
    if isinstance(references, str):
        references = [references]
    if not isinstance(references, list) or not references or not all(isinstance(r, str) for r in references):
        raise InvalidRequest(
            f"{where}: field 'reference' (or 'references'/'answer') is missing", param="suite"
        )
    return Item(id=item_id, messages=messages, references=tuple(references))


def _string(row: dict[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{where}: field '{key}' must be a non-empty string", param="suite")
    return value


def _answer_index(answer: Any, count: int, where: str) -> int:
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < count:
        return answer
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS[:count]:
        return LETTERS.index(answer.strip().upper())
    raise InvalidRequest(
        f"{where}: field 'answer' must be a letter A-{LETTERS[count - 1]} or an index", param="suite"
    )


def _mc_prompt(question: str, choices: list[Any]) -> str:
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
    return f"{question}\n{options}\n请只回答选项字母 (Answer with the letter only)."
