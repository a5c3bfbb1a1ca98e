"""User feedback on responses, attributed to the version (and deployment) that served them.

``POST /v1/feedback`` names a response id; the gateway's ``ResponseLog`` says which version served
it, to which key and project. Feedback is stored with those, and linked in the lineage graph
(``model:NAME@V`` → ``feedback:ID``, and ``deployment:NAME`` → ``feedback:ID`` when a deployment
routed it). Readers: the canary controller (mean score per version over a window) and data
pipelines (``list_feedback(max_score=…)``: low-scored answers with the user's correction).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import case, func, null, select, update

from stratum.errors import InvalidRequest, NotFound
from stratum.registry import lineage
from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.registry.schemas import parse_ref
from stratum.registry.tables import FeedbackRow
from stratum.storage import Database, utcnow

Thumbs = Literal["up", "down"]
# Long enough for a corrected answer of several pages; bounded so one request cannot fill the store.
MAX_CORRECTION_CHARS = 100_000
MAX_COMMENT_CHARS = 10_000
_THUMB_SCORES = {"up": 1.0, "down": 0.0}


class FeedbackPublic(BaseModel):
    """One piece of feedback. ``score`` is in [0, 1]; thumbs up counts 1, thumbs down 0."""

    model_config = ConfigDict(frozen=True)

    id: str
    response_id: str
    request_id: str
    model: str
    version_ref: str
    deployment: str | None = None
    score: float
    thumbs: Thumbs | None = None
    correction: str | None = None
    comment: str | None = None
    key_id: str | None = None
    org_id: str | None = None
    project_id: str | None = None
    created_at: datetime


class FeedbackExample(FeedbackPublic):
    """Feedback with what was asked and answered (guard-masked), for building datasets; ``None``
    when the gateway did not keep them (older responses, ``STRATUM_FEEDBACK_PROMPTS=false``,
    erased after ``STRATUM_PROMPT_RETENTION_DAYS``, or a streamed answer)."""

    prompt: list[dict[str, Any]] | None = None
    answer: str | None = None


class ScoreSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    version_ref: str
    count: int
    mean: float | None
    positives: int  # scores ≥ 0.5: the "successes" of a two-proportion test


def _public(row: FeedbackRow) -> FeedbackPublic:
    return FeedbackPublic(
        id=row.id,
        response_id=row.response_id,
        request_id=row.request_id,
        model=row.model,
        version_ref=row.version_ref,
        deployment=row.deployment,
        score=row.score,
        thumbs=row.thumbs,  # type: ignore[arg-type]  # checked on write
        correction=row.correction,
        comment=row.comment,
        key_id=row.key_id,
        org_id=row.org_id,
        project_id=row.project_id,
        created_at=row.created_at,
    )


def _score(score: float | None, thumbs: str | None) -> float:
    if score is None and thumbs is None:
        raise InvalidRequest("Send a 'score' between 0 and 1, or 'thumbs' ('up' or 'down').", param="score")
    if thumbs is not None and thumbs not in _THUMB_SCORES:
        raise InvalidRequest(f"thumbs must be 'up' or 'down', got {thumbs!r}.", param="thumbs")
    if score is not None:
        if isinstance(score, bool) or not 0.0 <= float(score) <= 1.0:
            raise InvalidRequest(f"score must be a number between 0 and 1, got {score!r}.", param="score")
        if thumbs is not None and (float(score) >= 0.5) != (thumbs == "up"):
            raise InvalidRequest(f"score {score} contradicts thumbs '{thumbs}'.", param="thumbs")
        return float(score)
    assert thumbs is not None
    return _THUMB_SCORES[thumbs]


def _text(value: str | None, *, limit: int, param: str) -> str | None:
    if value is None:
        return None
    if len(value) > limit:
        raise InvalidRequest(f"{param} is longer than {limit} characters.", param=param)
    return value if value.strip() else None


class FeedbackService:
    """Serves: ``POST /v1/feedback`` (``submit``), data pipelines (``list_feedback``) and the
    deployment controllers and A/B reports (``score_summary``)."""

    def __init__(self, db: Database, responses: ResponseLog | None = None) -> None:
        self._db = db
        self._responses = responses or ResponseLog(db)

    def submit(
        self,
        *,
        response_id: str,
        score: float | None = None,
        thumbs: str | None = None,
        correction: str | None = None,
        comment: str | None = None,
        key_id: str | None = None,
        org_id: str | None = None,
        project_id: str | None = None,
        is_admin: bool = False,
        feedback_id: str,
    ) -> FeedbackPublic:
        """Store feedback on ``response_id`` as the given caller.

        A caller may judge only responses served to its own project (its own key when it has no
        project); anything else answers 404 exactly like an unknown id, so ids cannot be probed.
        """
        value = _score(score, thumbs)
        correction = _text(correction, limit=MAX_CORRECTION_CHARS, param="correction")
        comment = _text(comment, limit=MAX_COMMENT_CHARS, param="comment")
        served = self._responses.lookup(response_id) if response_id else None
        if served is None or (not is_admin and not _same_tenant(served, key_id, org_id, project_id)):
            raise NotFound(
                f"No response {response_id!r} was served to this project (or it is too old to rate).",
                param="response_id",
            )
        row = FeedbackRow(
            id=feedback_id,
            response_id=response_id,
            request_id=served.request_id,
            model=served.model,
            version_ref=served.version_ref,
            deployment=served.deployment,
            score=value,
            thumbs=thumbs,
            correction=correction,
            comment=comment,
            key_id=key_id,
            org_id=served.org_id,
            project_id=served.project_id,
            created_at=utcnow(),
            # SQL NULL, not a JSON null, when nothing was kept (retention looks for non-NULL).
            prompt=served.prompt if served.prompt is not None else null(),
            answer=served.answer,
        )
        with self._db.session() as session:
            session.add(row)
            session.flush()
            target = ("feedback", feedback_id)
            lineage.add_edge(
                session, source=("model", served.version_ref), target=target, relation="feedback"
            )
            if served.deployment:
                lineage.add_edge(
                    session, source=("deployment", served.deployment), target=target, relation="feedback"
                )
        return _public(row)

    def list_feedback(
        self,
        *,
        model_ref: str | None = None,
        since: datetime | None = None,
        max_score: float | None = None,
        with_correction: bool = False,
        project_id: str | None = None,
        limit: int = 1000,
    ) -> list[FeedbackPublic]:
        """Feedback oldest first. ``model_ref``: ``NAME@V`` for one version, ``NAME`` for all of them."""
        query = _filtered(model_ref, since, max_score, with_correction, project_id, limit)
        with self._db.session(write=False) as session:
            return [_public(row) for row in session.scalars(query)]

    def examples(
        self,
        *,
        model_ref: str | None = None,
        since: datetime | None = None,
        max_score: float | None = None,
        project_id: str | None = None,
        limit: int = 10_000,
    ) -> list[FeedbackExample]:
        """Like ``list_feedback``, with each response's stored prompt and answer (data pipelines)."""
        query = _filtered(model_ref, since, max_score, False, project_id, limit)
        with self._db.session(write=False) as session:
            return [
                FeedbackExample(**_public(row).model_dump(), prompt=row.prompt, answer=row.answer)
                for row in session.scalars(query)
            ]

    def erase_prompts(self, *, before: datetime) -> int:
        """Retention: forget the prompts and answers of feedback older than ``before`` (the score
        and the correction stay)."""
        with self._db.session() as session:
            result = session.execute(
                update(FeedbackRow)
                .where(FeedbackRow.created_at < before)
                .where(FeedbackRow.prompt.is_not(None) | FeedbackRow.answer.is_not(None))
                .values(prompt=null(), answer=None)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def scores(
        self, version_refs: Sequence[str], *, since: datetime | None = None, deployment: str | None = None
    ) -> dict[str, list[float]]:
        """The raw scores per version (for bootstrap tests), oldest first."""
        query = select(FeedbackRow.version_ref, FeedbackRow.score).where(
            FeedbackRow.version_ref.in_(list(version_refs))
        )
        if since is not None:
            query = query.where(FeedbackRow.created_at >= since)
        if deployment is not None:
            query = query.where(FeedbackRow.deployment == deployment)
        result: dict[str, list[float]] = {ref: [] for ref in version_refs}
        with self._db.session(write=False) as session:
            for ref, score in session.execute(query.order_by(FeedbackRow.created_at)):
                result[ref].append(score)
        return result

    def score_summary(
        self,
        version_refs: Sequence[str],
        *,
        since: datetime | None = None,
        deployment: str | None = None,
    ) -> dict[str, ScoreSummary]:
        """Count, mean score and positives per version (feedback created at or after ``since``)."""
        positive = func.sum(case((FeedbackRow.score >= 0.5, 1), else_=0))
        query = (
            select(FeedbackRow.version_ref, func.count(), func.avg(FeedbackRow.score), positive)
            .where(FeedbackRow.version_ref.in_(list(version_refs)))
            .group_by(FeedbackRow.version_ref)
        )
        if since is not None:
            query = query.where(FeedbackRow.created_at >= since)
        if deployment is not None:
            query = query.where(FeedbackRow.deployment == deployment)
        result = {ref: ScoreSummary(version_ref=ref, count=0, mean=None, positives=0) for ref in version_refs}
        with self._db.session(write=False) as session:
            for ref, count, mean, positives in session.execute(query):
                result[ref] = ScoreSummary(
                    version_ref=ref, count=count, mean=float(mean), positives=int(positives or 0)
                )
        return result


def _filtered(
    model_ref: str | None,
    since: datetime | None,
    max_score: float | None,
    with_correction: bool,
    project_id: str | None,
    limit: int,
) -> Any:
    query = select(FeedbackRow).order_by(FeedbackRow.created_at, FeedbackRow.id).limit(limit)
    if model_ref is not None:
        name, version = parse_ref(model_ref)
        if isinstance(version, int):
            query = query.where(FeedbackRow.version_ref == f"{name}@{version}")
        elif version is None:
            # Every version of NAME, whatever the client asked for (NAME, NAME:prod, a route).
            query = query.where(FeedbackRow.version_ref.startswith(f"{name}@", autoescape=True))
        else:
            raise InvalidRequest("model_ref is NAME or NAME@VERSION, not an alias.", param="model_ref")
    if since is not None:
        query = query.where(FeedbackRow.created_at >= since)
    if max_score is not None:
        query = query.where(FeedbackRow.score <= max_score)
    if with_correction:
        query = query.where(FeedbackRow.correction.is_not(None))
    if project_id is not None:
        query = query.where(FeedbackRow.project_id == project_id)
    return query


def _same_tenant(
    served: ServedResponse, key_id: str | None, org_id: str | None, project_id: str | None
) -> bool:
    if served.project_id is not None:
        return served.project_id == project_id
    if served.org_id is not None:
        return served.org_id == org_id and project_id is None
    return served.key_id == key_id
