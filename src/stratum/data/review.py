"""The review queue: pre-label rows with a labeller, send low-confidence rows to people, and make the
next version from their decisions.

    label(ref, labeller, threshold)   new version with ``label`` and ``confidence`` columns; rows with
                                      confidence < threshold are queued (same transaction)
    queue(ref)                        the queued rows of that version (pending, or all)
    decide(ref, decisions)            accept / edit (a replacement row and/or label) / reject
    commit(ref)                       once nothing is pending: the next version, rejected rows
                                      dropped and edited rows replaced; the report counts each

Labellers are pluggable (``Labeller``: ``name``, ``params``, ``label(text) -> (label, confidence)``).
Built in: ``KeywordLabeller`` (keywords and ``re:`` regexes per label) and ``ChatLabeller`` (an LLM
prompt through any served model, via a completion function the caller provides).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratum.data.formats import normalise_row, row_text
from stratum.data.schemas import DatasetVersion, ReviewDecision, ReviewItem, StepReport, Transform
from stratum.data.service import DatasetService
from stratum.data.tables import DatasetVersionRow, ReviewItemRow
from stratum.errors import Conflict, InvalidRequest
from stratum.storage import utcnow


class Labeller(Protocol):
    name: str

    @property
    def params(self) -> dict[str, Any]: ...

    def label(self, text: str) -> tuple[str | None, float]: ...


@dataclass
class KeywordLabeller:
    """Labels by keyword/regex hits. ``rules`` maps a label to patterns: plain keywords match
    case-insensitively as substrings (so Chinese needs no tokenizer); ``re:PATTERN`` is a regex.

    Confidence is ``best / (all hits + 1)``: one hit for one label gives 0.5, two hits 0.67, a tie
    between labels 0.33 or less, no hit 0 (label ``default``). The +1 keeps a single keyword from
    looking certain.
    """

    rules: dict[str, list[str]]
    default: str | None = None
    name: str = "keyword"
    _compiled: dict[str, list[re.Pattern[str]]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.rules or not all(isinstance(p, list) and p for p in self.rules.values()):
            raise InvalidRequest(
                "keyword rules map each label to a non-empty list of patterns", param="rules"
            )
        for label, patterns in self.rules.items():
            compiled = []
            for pattern in patterns:
                try:
                    compiled.append(
                        re.compile(pattern[3:])
                        if pattern.startswith("re:")
                        else re.compile(re.escape(pattern), re.I)
                    )
                except re.error as exc:
                    raise InvalidRequest(
                        f"label {label!r}: bad regex {pattern!r}: {exc}", param="rules"
                    ) from exc
            self._compiled[label] = compiled

    @property
    def params(self) -> dict[str, Any]:
        return {"rules": self.rules, "default": self.default}

    def label(self, text: str) -> tuple[str | None, float]:
        hits = {
            label: sum(1 for p in patterns if p.search(text)) for label, patterns in self._compiled.items()
        }
        total = sum(hits.values())
        if total == 0:
            return self.default, 0.0
        best = max(hits, key=lambda label: hits[label])
        return best, round(hits[best] / (total + 1), 4)


@dataclass
class ChatLabeller:
    """Labels through a served chat model: ``complete(prompt) -> answer`` is any completion function
    (the CLI passes one that calls the gateway's /v1/chat/completions).

    Confidence: 0.9 when the answer is exactly one of ``labels``, 0.6 when it contains exactly one,
    else 0 (label None) — a model without log-probabilities gives no better signal.
    """

    labels: list[str]
    complete: Callable[[str], str]
    model: str
    instruction: str = (
        "Classify the text into exactly one of these labels: {labels}. Answer with the label only."
    )
    name: str = "llm"

    @property
    def params(self) -> dict[str, Any]:
        return {"labels": self.labels, "model": self.model, "instruction": self.instruction}

    def label(self, text: str) -> tuple[str | None, float]:
        prompt = self.instruction.format(labels=", ".join(self.labels)) + "\n\n" + text
        answer = self.complete(prompt).strip().strip("。.!！\"'「」")
        if answer in self.labels:
            return answer, 0.9
        contained = [label for label in self.labels if label in answer]
        if len(contained) == 1:
            return contained[0], 0.6
        return None, 0.0


def _item(row: ReviewItemRow, rows: list[dict[str, Any]]) -> ReviewItem:
    return ReviewItem(
        id=row.id,
        row_index=row.row_index,
        label=row.label,
        confidence=row.confidence,
        status=row.status,  # type: ignore[arg-type]
        row=rows[row.row_index],
        edited=row.edited,
    )


class ReviewService:
    """Serves: the CLI (``stratum data label|review``) and the admin API review routes."""

    def __init__(self, datasets: DatasetService) -> None:
        self.datasets = datasets

    def label(
        self,
        ref: str,
        labeller: Labeller,
        *,
        threshold: float = 0.6,
        project: str | None = None,
        actor: str = "local",
    ) -> tuple[DatasetVersion, int]:
        """A new version with labels and confidences; returns it and how many rows were queued."""
        if not 0 <= threshold <= 1:
            raise InvalidRequest("threshold must be between 0 and 1", param="threshold")
        source = self.datasets.get(ref, project=project)
        rows = self.datasets.load_rows(source)
        labelled: list[dict[str, Any]] = []
        queued: list[tuple[int, str | None, float]] = []
        for index, row in enumerate(rows):
            label, confidence = labeller.label(row_text(row, source.format))
            out = {k: v for k, v in row.items() if k not in ("label", "confidence")}
            if label is not None:
                out["label"] = label
            out["confidence"] = float(confidence)
            labelled.append(out)
            if confidence < threshold:
                queued.append((index, label, float(confidence)))

        def enqueue(session: Session, version: DatasetVersionRow) -> None:
            for index, label, confidence in queued:
                session.add(
                    ReviewItemRow(version_id=version.id, row_index=index, label=label, confidence=confidence)
                )

        report = StepReport(
            step="label",
            rows_in=len(rows),
            rows_out=len(labelled),
            changed=len(labelled),
            details={"queued": len(queued), "threshold": threshold, "labeller": labeller.name},
        )
        version = self.datasets.commit_version(
            name=source.dataset,
            project=source.project,
            fmt=source.format,
            rows=labelled,
            parent=source,
            transform=Transform(
                name="label", params={"labeller": labeller.name, "threshold": threshold, **labeller.params}
            ),
            report=report,
            actor=actor,
            after=enqueue,
        )
        return version, len(queued)

    def queue(self, ref: str, *, project: str | None = None, pending_only: bool = True) -> list[ReviewItem]:
        version = self.datasets.get(ref, project=project)
        rows = self.datasets.load_rows(version)
        with self.datasets.db.session(write=False) as session:
            version_row, _, _ = self.datasets.version_row(session, version.ref)
            query = select(ReviewItemRow).where(ReviewItemRow.version_id == version_row.id)
            if pending_only:
                query = query.where(ReviewItemRow.status == "pending")
            return [_item(item, rows) for item in session.scalars(query.order_by(ReviewItemRow.row_index))]

    def decide(
        self, ref: str, decisions: list[ReviewDecision], *, project: str | None = None, actor: str = "local"
    ) -> list[ReviewItem]:
        """Record decisions (all or none); an edited row is validated against the dataset's format."""
        version = self.datasets.get(ref, project=project)
        rows = self.datasets.load_rows(version)
        with self.datasets.db.session() as session:
            version_row, _, _ = self.datasets.version_row(session, version.ref)
            items = {
                item.row_index: item
                for item in session.scalars(
                    select(ReviewItemRow).where(ReviewItemRow.version_id == version_row.id)
                )
            }
            if not items:
                raise InvalidRequest(f"{version.ref} has no review queue; make one with `stratum data label`")
            decided = []
            for number, decision in enumerate(decisions, start=1):
                item = items.get(decision.row_index)
                if item is None:
                    raise InvalidRequest(
                        f"decision {number}: row {decision.row_index} of {version.ref} "
                        "is not in the review queue",
                        param="row_index",
                    )
                item.status = {"accept": "accepted", "edit": "edited", "reject": "rejected"}[
                    decision.decision
                ]
                item.edited = self._edited(version, rows, item, decision, number)
                item.decided_by, item.decided_at = actor, utcnow()
                decided.append(item)
            session.flush()
            return [_item(item, rows) for item in decided]

    @staticmethod
    def _edited(
        version: DatasetVersion,
        rows: list[dict[str, Any]],
        item: ReviewItemRow,
        decision: ReviewDecision,
        number: int,
    ) -> dict[str, Any] | None:
        if decision.decision != "edit":
            return None
        if decision.row is None and decision.label is None:
            raise InvalidRequest(f"decision {number}: an edit needs a row and/or a label", param="row")
        base = decision.row if decision.row is not None else rows[item.row_index]
        row, errors = normalise_row(base, version.format, f"decision {number}")
        if row is None:
            raise InvalidRequest("; ".join(str(e) for e in errors), param="row")
        label = decision.label or rows[item.row_index].get("label")
        if label is not None:
            row["label"] = label
        # A person decided: full confidence.
        row["confidence"] = 1.0
        for key in ("split", "synthetic"):
            if key in rows[item.row_index] and key not in row:
                row[key] = rows[item.row_index][key]
        return row

    def commit(self, ref: str, *, project: str | None = None, actor: str = "local") -> DatasetVersion:
        """The next version from the decisions: every queued row must be decided first."""
        version = self.datasets.get(ref, project=project)
        items = self.queue(version.ref, pending_only=False)
        pending = [item.row_index for item in items if item.status == "pending"]
        if pending:
            raise Conflict(
                f"{version.ref} still has {len(pending)} rows to review (first: row {pending[0]})",
                param="dataset",
            )
        by_index = {item.row_index: item for item in items}
        rows = self.datasets.load_rows(version)
        out: list[dict[str, Any]] = []
        counts = {"accepted": 0, "edited": 0, "rejected": 0}
        for index, row in enumerate(rows):
            item = by_index.get(index)
            if item is None:
                out.append(row)
                continue
            counts[item.status] += 1
            if item.status == "accepted":
                out.append({**row, "confidence": 1.0})
            elif item.status == "edited":
                out.append(item.edited or row)
        report = StepReport(
            step="review",
            rows_in=len(rows),
            rows_out=len(out),
            dropped={"rejected": counts["rejected"]} if counts["rejected"] else {},
            changed=counts["edited"],
            details=counts,
        )
        return self.datasets.commit_version(
            name=version.dataset,
            project=version.project,
            fmt=version.format,
            rows=out,
            parent=version,
            transform=Transform(name="review", params={"reviewed": version.ref, **counts}),
            report=report,
            actor=actor,
        )
