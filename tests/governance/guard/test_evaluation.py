"""Precision/recall of the detectors on the labelled set (guard_cases.jsonl), with floors.

The set has 400+ mixed Chinese/English cases (see build_cases.py), including near-misses and a
few known misses; the floors sit just below the measured values so a regression fails here.
"""

from __future__ import annotations

from pathlib import Path

from stratum.governance.guard.evaluation import INJECTION, evaluate, load_cases
from stratum.governance.guard.pii import PII_TYPES

CASES = Path(__file__).with_name("guard_cases.jsonl")
FLOOR_PRECISION = 0.97
FLOOR_RECALL = 0.95


def test_the_set_is_large_and_mixed() -> None:
    cases = load_cases(CASES)
    assert len(cases) >= 300
    chinese = sum(any("\u4e00" <= ch <= "\u9fff" for ch in c["text"]) for c in cases)
    assert chinese >= 150 and len(cases) - chinese >= 60
    assert sum(not c["entities"] for c in cases) >= 100  # near-misses and clean texts


def test_precision_and_recall_per_type() -> None:
    result = evaluate(load_cases(CASES))
    report = {k: (round(t.precision, 3), round(t.recall, 3)) for k, t in result.tallies.items()}
    for kind in PII_TYPES:
        tally = result.tallies[kind]
        assert tally.tp >= 40, (kind, tally)
        assert tally.precision >= FLOOR_PRECISION, report
        assert tally.recall >= FLOOR_RECALL, report
    injection = result.tallies[INJECTION]
    assert injection.precision >= 0.9 and injection.recall >= 0.9, report
    overall = result.overall()
    assert overall.f1 >= 0.98, report


def test_a_detector_that_finds_nothing_would_fail() -> None:
    cases = load_cases(CASES)
    # The floors are not vacuous: dropping every entity's label costs precision on every type.
    relabelled = [{**c, "entities": []} for c in cases]
    result = evaluate(relabelled)
    assert all(result.tallies[k].precision == 0.0 for k in PII_TYPES)
