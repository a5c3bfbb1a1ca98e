"""``split``: assign each row to train / validation / test with a fixed seed.

The assignment is a seeded shuffle of row positions cut at the ratios, so the same input and seed
always give the same split, and the rows keep their order in the version (only a ``split`` column
is added). Counts are rounded so that they always add up to the number of rows.
"""

from __future__ import annotations

import random
from typing import Any

from stratum.data.schemas import StepReport
from stratum.data.transforms.base import ReportBuilder, Rows, Step
from stratum.errors import InvalidRequest

SPLITS = ("train", "validation", "test")


def split_counts(total: int, ratios: tuple[float, float, float]) -> dict[str, int]:
    validation = round(total * ratios[1])
    test = round(total * ratios[2])
    return {"train": total - validation - test, "validation": validation, "test": test}


def _apply(rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    ratios = (float(params["train"]), float(params["validation"]), float(params["test"]))
    if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise InvalidRequest(
            "split ratios train + validation + test must be ≥ 0 and add up to 1", param="params"
        )
    counts = split_counts(len(rows), ratios)
    order = list(range(len(rows)))
    random.Random(int(params["seed"])).shuffle(order)
    assignment: dict[int, str] = {}
    start = 0
    for name in SPLITS:
        for position in order[start : start + counts[name]]:
            assignment[position] = name
        start += counts[name]
    out = [{**row, "split": assignment[i]} for i, row in enumerate(rows)]
    report = ReportBuilder("split", fmt, len(rows))
    report.changed = sum(
        1 for before, after in zip(rows, out, strict=True) if before.get("split") != after["split"]
    )
    report.details = {"splits": counts, "seed": int(params["seed"])}
    return out, report.build(len(out))


STEP = Step(
    name="split",
    version=1,
    apply=_apply,
    params={"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 42},
    help="add a split column: train/validation/test at the given ratios (0.8/0.1/0.1) with a fixed seed (42)",
)
