"""``pii``: scrub personal data with the governance detectors (``governance.guard.pii``).

``action=mask`` (default) replaces each entity with its label (``[PHONE]``, ``[ID_CARD]`` …) in every
text field; ``action=drop`` drops rows that contain any. ``types`` limits the entity types (default:
all the detectors know). The report counts entities per type; its examples show masked text only,
so the report never copies the personal data it removed.
"""

from __future__ import annotations

from typing import Any

from stratum.data.formats import map_texts, row_text
from stratum.data.schemas import DroppedExample, StepReport
from stratum.data.transforms.base import EXAMPLES_PER_REASON, ReportBuilder, Rows, Step
from stratum.errors import InvalidRequest
from stratum.governance.guard.pii import check_types, mask_pii


def _apply(rows: Rows, fmt: str, params: dict[str, Any]) -> tuple[Rows, StepReport]:
    if params["action"] not in ("mask", "drop"):
        raise InvalidRequest("pii action is mask or drop", param="params")
    types = check_types(params["types"]) if params["types"] is not None else None
    report = ReportBuilder("pii", fmt, len(rows))
    counts: dict[str, int] = {}
    out: Rows = []
    for index, row in enumerate(rows):
        found: list[str] = []

        def scrub(text: str, found: list[str] = found) -> str:
            masked, entities = mask_pii(text, types)
            found.extend(entity.type for entity in entities)
            return masked

        masked_row = map_texts(row, fmt, scrub)
        for kind in found:
            counts[kind] = counts.get(kind, 0) + 1
        if not found:
            out.append(row)
        elif params["action"] == "drop":
            # The example shows the masked row: the report must not keep the data it removed.
            # (every type masked, not just the ones asked for).
            shown = map_texts(row, fmt, lambda text: mask_pii(text)[0])
            report.drop(index, shown, "pii", ", ".join(sorted(set(found))))
        else:
            out.append(masked_row)
            report.changed += 1
            if len(report.examples) < EXAMPLES_PER_REASON:
                text = row_text(masked_row, fmt)[:200]
                report.examples.append(DroppedExample(index=index, reason="masked", text=text))
    report.details = {"action": params["action"], "entities": counts}
    return out, report.build(len(out))


STEP = Step(
    name="pii",
    version=1,
    apply=_apply,
    params={"types": None, "action": "mask"},
    help="mask (action=mask) or drop (action=drop) personal data: id_card, phone, bank_card, email, "
    "ipv4, passport (types=[..])",
)
