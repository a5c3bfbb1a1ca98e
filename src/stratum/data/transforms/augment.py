"""``augment``: synonym replacement for Chinese and English; added rows are marked ``synthetic``.

For each original row, up to ``copies`` variants are made by replacing words of the prompt side
(user messages, instruction and input, or prompt) with a synonym from the bundled table
(``synonyms.GROUPS``) or a ``table`` file (JSON list of groups). Each candidate word is replaced
with probability ``p``; a variant identical to its original, or to another variant, is not added.
Chinese has no spaces, so candidates are found by longest match against the table; English words
by word boundaries. Seeded: the same input and seed give the same rows. Originals get
``synthetic: false``, variants ``synthetic: true``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from stratum.data.formats import canonical_json
from stratum.data.schemas import StepReport
from stratum.data.transforms.base import ReportBuilder, Rows, Step
from stratum.data.transforms.synonyms import GROUPS
from stratum.errors import InvalidRequest

_ASCII_WORD = re.compile(r"^[A-Za-z][A-Za-z ]*$")


class SynonymTable:
    def __init__(self, groups: tuple[tuple[str, ...], ...] | list[list[str]]) -> None:
        self.synonyms: dict[str, list[str]] = {}
        for group in groups:
            for word in group:
                self.synonyms.setdefault(word.lower() if _ASCII_WORD.match(word) else word, []).extend(
                    other for other in group if other != word
                )
        english = sorted((w for w in self.synonyms if _ASCII_WORD.match(w)), key=len, reverse=True)
        chinese = sorted((w for w in self.synonyms if not _ASCII_WORD.match(w)), key=len, reverse=True)
        parts = [r"\b" + re.escape(w) + r"\b" for w in english] + [re.escape(w) for w in chinese]
        self._pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def replace(self, text: str, rng: random.Random, p: float) -> str:
        if self._pattern is None:
            return text

        def swap(match: re.Match[str]) -> str:
            word = match.group(0)
            options = self.synonyms.get(word.lower() if _ASCII_WORD.match(word) else word)
            if not options or rng.random() >= p:
                return word
            choice = rng.choice(options)
            return choice.capitalize() if word[:1].isupper() else choice

        return self._pattern.sub(swap, text)


def _prompt_side(row: dict[str, Any], fmt: str, fn: Any) -> dict[str, Any]:
    out = dict(row)
    if fmt == "chat":
        out["messages"] = [
            {"role": m["role"], "content": fn(m["content"]) if m["role"] == "user" else m["content"]}
            for m in row["messages"]
        ]
    elif fmt == "instruction":
        out["instruction"], out["input"] = fn(row["instruction"]), fn(row["input"])
    else:
        out["prompt"] = fn(row["prompt"])
    return out


def _table(params: dict[str, Any]) -> SynonymTable:
    if params["table"] is None:
        return SynonymTable(GROUPS)
    path = Path(params["table"])
    try:
        groups = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"synonym table {path}: {exc}", param="params") from exc
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise InvalidRequest("a synonym table is a JSON list of lists of words", param="params")
    return SynonymTable([[str(w) for w in g] for g in groups])


def _apply(rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    p, copies = float(params["p"]), int(params["copies"])
    if not 0 < p <= 1 or copies < 1:
        raise InvalidRequest("augment needs 0 < p <= 1 and copies >= 1", param="params")
    table = _table(params)
    rng = random.Random(int(params["seed"]))
    report = ReportBuilder("augment", fmt, len(rows))
    out: Rows = []
    for row in rows:
        original = {**row, "synthetic": bool(row.get("synthetic", False))}
        out.append(original)
        seen = {canonical_json(_prompt_side(row, fmt, lambda t: t))}
        for _ in range(copies):
            variant = _prompt_side(row, fmt, lambda text: table.replace(text, rng, p))
            key = canonical_json(variant)
            if key in seen:
                continue
            seen.add(key)
            out.append({**variant, "synthetic": True})
            report.added += 1
    report.details = {"method": "synonym", "p": p, "copies": copies, "seed": int(params["seed"])}
    return out, report.build(len(out))


STEP = Step(
    name="augment",
    version=1,
    apply=_apply,
    params={"p": 0.5, "copies": 1, "seed": 42, "table": None},
    help="synonym replacement (Chinese and English, bundled table or table=FILE.json) on the prompt side; "
    "adds up to `copies` variants per row marked synthetic=true",
)
