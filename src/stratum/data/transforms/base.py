"""The step protocol: a named, versioned function from rows to rows plus a report.

A step never mutates its input; ``apply`` returns new rows and a ``StepReport`` saying how many rows
went in and out, how many were dropped per reason, and a few examples of each. ``version`` is bumped
whenever a step's behaviour changes, and recorded in the transform of every version it made, so
re-running "the same" step later is distinguishable from the original.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stratum.data.formats import row_text
from stratum.data.schemas import DroppedExample, StepReport
from stratum.errors import InvalidRequest

Rows = list[dict[str, Any]]
# Examples kept per reason in a report.
EXAMPLES_PER_REASON = 3
_EXAMPLE_CHARS = 200


@dataclass
class ReportBuilder:
    """Collects drops and changes while a step runs, then builds its ``StepReport``."""

    step: str
    fmt: str
    rows_in: int
    dropped: dict[str, int] = field(default_factory=dict)
    examples: list[DroppedExample] = field(default_factory=list)
    changed: int = 0
    added: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def drop(self, index: int, row: dict[str, Any], reason: str, note: str | None = None) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if sum(1 for e in self.examples if e.reason.split(":")[0] == reason) < EXAMPLES_PER_REASON:
            text = row_text(row, self.fmt)[:_EXAMPLE_CHARS]
            self.examples.append(
                DroppedExample(index=index, reason=f"{reason}: {note}" if note else reason, text=text)
            )

    def build(self, rows_out: int) -> StepReport:
        return StepReport(
            step=self.step,
            rows_in=self.rows_in,
            rows_out=rows_out,
            dropped=self.dropped,
            changed=self.changed,
            added=self.added,
            examples=self.examples,
            details=self.details,
        )


StepFn = Callable[[Rows, str, dict[str, Any]], tuple[Rows, StepReport]]


@dataclass(frozen=True)
class Step:
    name: str
    version: int
    apply: StepFn
    params: dict[str, Any]  # defaults; unknown parameters are refused
    help: str


def merged_params(step: Step, given: dict[str, Any]) -> dict[str, Any]:
    unknown = set(given) - set(step.params)
    if unknown:
        known = ", ".join(sorted(step.params)) or "none"
        raise InvalidRequest(
            f"step {step.name!r} has no parameter {sorted(unknown)[0]!r} (parameters: {known})",
            param="params",
        )
    return {**step.params, **given}
