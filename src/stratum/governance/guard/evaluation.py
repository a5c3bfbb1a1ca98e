"""Precision and recall of the detectors on a labelled set (JSON lines), per type.

Each line: ``{"text": …, "entities": [{"type", "start", "end"}, …], "injection": true|false?}``.
An entity counts as found only with the exact type and span; ``injection`` (when present) is
compared with ``injection_score(text) >= threshold``. Used by the test that keeps the floors and by
``benchmarks/guard_bench.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratum.governance.guard.injection import injection_score
from stratum.governance.guard.pii import PII_TYPES, find_pii

INJECTION = "injection"


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Evaluation:
    cases: int
    tallies: dict[str, Tally]
    # (text, missed or spurious (type, span)) for reading the failures.
    errors: list[tuple[str, str, tuple[str, int, int]]] = field(default_factory=list)

    def overall(self) -> Tally:
        total = Tally()
        for kind, tally in self.tallies.items():
            if kind != INJECTION:
                total.tp, total.fp, total.fn = total.tp + tally.tp, total.fp + tally.fp, total.fn + tally.fn
        return total


def load_cases(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def evaluate(cases: Iterable[dict[str, Any]], *, injection_threshold: float = 0.7) -> Evaluation:
    tallies = {kind: Tally() for kind in (*PII_TYPES, INJECTION)}
    errors: list[tuple[str, str, tuple[str, int, int]]] = []
    count = 0
    for case in cases:
        count += 1
        text = case["text"]
        gold = Counter((e["type"], e["start"], e["end"]) for e in case["entities"])
        found = Counter((e.type, e.start, e.end) for e in find_pii(text))
        for item in (gold & found).elements():
            tallies[item[0]].tp += 1
        for item in (found - gold).elements():
            tallies[item[0]].fp += 1
            errors.append((text, "spurious", item))
        for item in (gold - found).elements():
            tallies[item[0]].fn += 1
            errors.append((text, "missed", item))
        if "injection" in case:
            flagged = injection_score(text).score >= injection_threshold
            tally = tallies[INJECTION]
            if flagged and case["injection"]:
                tally.tp += 1
            elif flagged:
                tally.fp += 1
                errors.append((text, "spurious", (INJECTION, 0, len(text))))
            elif case["injection"]:
                tally.fn += 1
                errors.append((text, "missed", (INJECTION, 0, len(text))))
    return Evaluation(cases=count, tallies=tallies, errors=errors)
