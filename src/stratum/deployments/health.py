"""Per-version health over a sliding window, and the canary verdict built from it.

Outcomes come from ``served_responses`` (every gateway flushes there about once a second), so all
gateways judge a canary on the same numbers. An error is a 5xx (the model or its upstream failed);
4xx are the client's mistakes and 499 a client that left, neither says anything about a version.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select

from stratum.deployments.schemas import ArmStats, DeploymentPublic, Thresholds, Verdict
from stratum.registry.feedback import FeedbackService
from stratum.registry.tables import ServedResponseRow
from stratum.storage import Database


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100): the smallest value with ≥ q % of values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def arm_stats(
    db: Database, feedback: FeedbackService, *, deployment: str, refs: Sequence[str], since: datetime
) -> dict[str, ArmStats]:
    """Requests, 5xx rate, p99 latency and feedback per ref, for traffic routed by ``deployment``.

    Counting happens in the store and p99 is fetched as one row per ref (ORDER BY latency OFFSET
    rank - 1), so a busy window costs a few small queries, not a transfer of every row.
    """
    judged = and_(
        ServedResponseRow.deployment == deployment,
        ServedResponseRow.at >= since,
        ServedResponseRow.version_ref.in_(list(refs)),
        # 4xx are the client's mistakes and 499 a client that left: neither judges a version.
        or_(ServedResponseRow.status < 400, ServedResponseRow.status >= 500),
        ServedResponseRow.status != 499,
    )
    counts = dict.fromkeys(refs, (0, 0))
    p99: dict[str, float | None] = dict.fromkeys(refs)
    failed = func.sum(case((ServedResponseRow.status >= 500, 1), else_=0))
    with db.session(write=False) as session:
        query = select(ServedResponseRow.version_ref, func.count(), failed).where(judged)
        for ref, count, errors in session.execute(query.group_by(ServedResponseRow.version_ref)):
            counts[ref] = (int(count), int(errors or 0))
        for ref, (count, _) in counts.items():
            if count:
                rank = max(1, math.ceil(0.99 * count))  # nearest rank, as ``percentile``
                p99[ref] = session.scalar(
                    select(ServedResponseRow.latency_ms)
                    .where(judged, ServedResponseRow.version_ref == ref)
                    .order_by(ServedResponseRow.latency_ms)
                    .offset(rank - 1)
                    .limit(1)
                )
    scores = feedback.score_summary(refs, since=since, deployment=deployment)
    result = {}
    for ref in refs:
        count, errors = counts[ref]
        result[ref] = ArmStats(
            ref=ref,
            requests=count,
            errors=errors,
            error_rate=errors / count if count else 0.0,
            p99_ms=p99[ref],
            feedback=scores[ref].count,
            mean_score=scores[ref].mean,
            positives=scores[ref].positives,
        )
    return result


def judge(
    deployment: DeploymentPublic,
    stats: dict[str, ArmStats],
    *,
    now: datetime,
    step_stats: dict[str, ArmStats] | None = None,
) -> Verdict:
    """Roll back, advance one step, promote, or wait (see ``Thresholds`` for the rules).

    ``stats`` cover the sliding window (rollback); ``step_stats`` only the current step, whose
    candidate traffic must reach ``min_samples`` before the next step (default: ``stats``).
    """
    assert deployment.candidate_ref is not None
    limits: Thresholds = deployment.thresholds
    candidate, stable = stats[deployment.candidate_ref], stats[deployment.stable_ref]
    reasons: list[str] = []
    if candidate.requests >= limits.min_samples:
        # Errors are judged against stable when stable has enough traffic, else against zero: a
        # candidate failing most requests must not wait for stable's samples.
        baseline = stable.error_rate if stable.requests >= limits.min_samples else 0.0
        if candidate.error_rate - baseline > limits.error_rate:
            reasons.append(
                f"error rate {candidate.error_rate:.1%} vs stable {baseline:.1%} "
                f"(+{candidate.error_rate - baseline:.1%} > +{limits.error_rate:.1%}) "
                f"over {candidate.requests} vs {stable.requests} requests"
            )
        if (
            stable.requests >= limits.min_samples
            and candidate.p99_ms is not None
            and stable.p99_ms is not None
            and candidate.p99_ms - stable.p99_ms > limits.p99_ms
        ):
            reasons.append(
                f"p99 {candidate.p99_ms:.0f} ms vs stable {stable.p99_ms:.0f} ms "
                f"(+{candidate.p99_ms - stable.p99_ms:.0f} ms > +{limits.p99_ms:.0f} ms)"
            )
    if (
        candidate.feedback >= limits.min_feedback
        and stable.feedback >= limits.min_feedback
        and candidate.mean_score is not None
        and stable.mean_score is not None
        and stable.mean_score - candidate.mean_score > limits.quality_drop
    ):
        reasons.append(
            f"feedback score {candidate.mean_score:.3f} vs stable {stable.mean_score:.3f} "
            f"(-{stable.mean_score - candidate.mean_score:.3f} > -{limits.quality_drop:.3f}) "
            f"over {candidate.feedback} vs {stable.feedback} ratings"
        )
    if reasons:
        return Verdict(action="rollback", reasons=reasons, candidate=candidate, stable=stable)
    waited = (now - deployment.step_started_at).total_seconds()
    if waited < deployment.interval_s:
        return Verdict(action="wait", candidate=candidate, stable=stable)
    in_step = (step_stats or stats)[deployment.candidate_ref]
    if in_step.requests < limits.min_samples:
        return Verdict(
            action="wait",
            reasons=[f"{in_step.requests} of {limits.min_samples} candidate requests seen in this step"],
            candidate=candidate,
            stable=stable,
        )
    # Reaching 100 % is the promotion: the candidate becomes the stable version.
    last = deployment.steps[deployment.step_index + 1] >= 100
    summary = (
        f"healthy for {waited:.0f} s: {in_step.requests} requests in this step, "
        f"error rate {candidate.error_rate:.1%}"
        + (f", p99 {candidate.p99_ms:.0f} ms" if candidate.p99_ms is not None else "")
    )
    return Verdict(
        action="promote" if last else "step", reasons=[summary], candidate=candidate, stable=stable
    )
