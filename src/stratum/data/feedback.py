"""Feedback → a chat dataset version (``stratum data from-feedback``, scheduled backflow).

Every low-scored piece of feedback (score ≤ ``max_score``) on a model becomes at most one row:

- with a correction: the prompt the gateway kept (guard-masked) followed by the user's correction
  as the assistant turn, label ``correction``;
- without one (e.g. a bare thumbs-down): the prompt and the answer that was judged bad, label
  ``needs_correction``, confidence 0, queued for review (``stratum data review``: edit in the
  right answer, or reject; accepting keeps the original answer, i.e. the thumbs-down was wrong);
- with no known prompt (feedback older than prompt keeping, or erased by retention): counted as
  ``missing_prompt`` unless ``prompts`` (response id → text or messages, e.g. from the client's
  own request log) supplies it; a bare thumbs-down whose answer was not kept: ``missing_answer``.

Nothing is invented. The version records a ``feedback:ID → dataset:NAME@N`` lineage edge per row
(relation ``backflow``) in its own transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from stratum.data.formats import normalise_row
from stratum.data.schemas import DatasetVersion, StepReport, Transform
from stratum.data.service import DatasetService, check_name
from stratum.data.tables import DatasetVersionRow, ReviewItemRow
from stratum.registry import lineage
from stratum.registry.feedback import FeedbackExample, FeedbackService

# Feedback at or below this score counts as low-scored (thumbs down is 0, thumbs up 1).
LOW_SCORE = 0.5
CORRECTION, NEEDS_CORRECTION = "correction", "needs_correction"


class FeedbackDataset(BaseModel):
    """What ``build`` made: the version (``None`` when no row could be built) and the counts."""

    version: DatasetVersion | None
    feedback: int
    corrections: int
    review: int
    missing_prompt: int
    missing_answer: int

    def nothing_built(self) -> str:
        """Why no version was made (for the CLI's and the API's error)."""
        return (
            f"no dataset row could be built from {self.feedback} low-scored feedback "
            f"({self.missing_prompt} without a known prompt, {self.missing_answer} bare thumbs-down "
            "without a kept answer)"
        )


def prompt_messages(prompt: Any) -> list[dict[str, str]] | None:
    """Stored request messages (or a plain prompt) as ``{role, content}`` text turns."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}] if prompt.strip() else None
    if not isinstance(prompt, list):
        return None
    out = []
    for message in prompt:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            continue
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if isinstance(content, str) and content.strip():
            out.append({"role": message["role"], "content": content})
    return out or None


def build(
    datasets: DatasetService,
    feedback: FeedbackService,
    *,
    name: str,
    model: str | None = None,
    since: datetime | None = None,
    max_score: float = LOW_SCORE,
    prompts: Mapping[str, Any] | None = None,
    project: str | None = None,
    source: str | None = None,
    actor: str = "local",
    feedback_project_id: str | None = None,
) -> FeedbackDataset:
    """The next version of dataset ``name`` from feedback (``model``: ``NAME`` or ``NAME@V``);
    ``feedback_project_id`` keeps only feedback on responses served to that project (the admin
    API: a project never builds from another tenant's traffic)."""
    check_name(name)
    items = feedback.examples(
        model_ref=model, since=since, max_score=max_score, project_id=feedback_project_id
    )
    rows: list[dict[str, Any]] = []
    used: list[FeedbackExample] = []
    queued: list[int] = []
    missing_prompt = missing_answer = 0
    for item in items:
        known = item.prompt if item.prompt is not None else (prompts or {}).get(item.response_id)
        messages = prompt_messages(known)
        if messages is None:
            missing_prompt += 1
            continue
        if item.correction is not None:
            turn, label, confidence = item.correction, CORRECTION, 1.0
        elif item.answer:
            turn, label, confidence = item.answer, NEEDS_CORRECTION, 0.0
        else:
            missing_answer += 1
            continue
        record = {"messages": [*messages, {"role": "assistant", "content": turn}], "label": label}
        row, _ = normalise_row(record | {"confidence": confidence}, "chat", f"feedback {item.id}")
        if row is None:  # e.g. only assistant turns were kept: not a usable example
            missing_prompt += 1
            continue
        if label == NEEDS_CORRECTION:
            queued.append(len(rows))
        rows.append(row)
        used.append(item)
    counts = {
        "feedback": len(items),
        "corrections": len(rows) - len(queued),
        "review": len(queued),
        "missing_prompt": missing_prompt,
        "missing_answer": missing_answer,
    }
    if not rows:
        return FeedbackDataset(version=None, **counts)

    def link(session: Session, version: DatasetVersionRow) -> None:
        for index in queued:
            session.add(
                ReviewItemRow(version_id=version.id, row_index=index, label=NEEDS_CORRECTION, confidence=0.0)
            )
        ref = f"{project}/{name}@{version.number}" if project else f"{name}@{version.number}"
        for item in used:
            lineage.add_edge(
                session,
                source=("feedback", item.id),
                target=("dataset", ref),
                relation="backflow",
                actor=actor,
            )

    params = {
        "model": model,
        "since": since.isoformat() if since else None,
        "max_score": max_score,
        "source": source,
    }
    report = StepReport(
        step="from_feedback",
        rows_in=len(items),
        rows_out=len(rows),
        dropped={k: counts[k] for k in ("missing_prompt", "missing_answer") if counts[k]},
        details=counts,
    )
    version = datasets.commit_version(
        name=name,
        project=project,
        fmt="chat",
        rows=rows,
        parent=None,
        transform=Transform(name="from_feedback", params={k: v for k, v in params.items() if v is not None}),
        report=report,
        description=f"feedback on {model or 'all models'} (score ≤ {max_score})",
        actor=actor,
        after=link,
    )
    return FeedbackDataset(version=version, **counts)
