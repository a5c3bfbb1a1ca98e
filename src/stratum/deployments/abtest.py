"""A/B significance on feedback: a two-proportion z-test and a bootstrap of the mean-score difference.

Both compare the first two arms (A = the first version named, B = the second). The z-test counts
a rating as a success when its score is ≥ 0.5 (thumbs up); the bootstrap resamples the raw scores
(fixed seed, so a report is reproducible) for a 95 % interval of mean(B) - mean(A). "Significant"
means p < 0.05 and the interval excludes 0; below ``MIN_FEEDBACK`` ratings per arm the report says
there is not enough data instead of guessing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from stratum.deployments import health
from stratum.deployments.schemas import ABReport, ArmReport
from stratum.deployments.service import DeploymentService
from stratum.errors import InvalidRequest
from stratum.registry.feedback import FeedbackService
from stratum.storage import Database, utcnow

ALPHA = 0.05
MIN_FEEDBACK = 10
BOOTSTRAP_ROUNDS = 2000
_SEED = 20261123


def two_proportion_z(success_a: int, total_a: int, success_b: int, total_b: int) -> tuple[float, float]:
    """(z, two-sided p) for H0: both arms have the same success rate (pooled standard error)."""
    if total_a == 0 or total_b == 0:
        raise ValueError("both arms need at least one observation")
    pooled = (success_a + success_b) / (total_a + total_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    if spread == 0:
        return 0.0, 1.0
    z = (success_b / total_b - success_a / total_a) / spread
    return z, math.erfc(abs(z) / math.sqrt(2))


def bootstrap_diff(
    a: Sequence[float], b: Sequence[float], *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = _SEED
) -> tuple[float, float, float]:
    """(mean(b) - mean(a), 2.5th and 97.5th percentiles of the resampled difference)."""
    if not a or not b:
        raise ValueError("both arms need at least one observation")
    rng = random.Random(seed)
    diffs = []
    for _ in range(rounds):
        mean_a = sum(rng.choices(a, k=len(a))) / len(a)
        mean_b = sum(rng.choices(b, k=len(b))) / len(b)
        diffs.append(mean_b - mean_a)
    diffs.sort()
    low = health.percentile(diffs, 2.5)
    high = health.percentile(diffs, 97.5)
    assert low is not None and high is not None
    return sum(b) / len(b) - sum(a) / len(a), low, high


def report(db: Database, deployments: DeploymentService, feedback: FeedbackService, name: str) -> ABReport:
    deployment = deployments.get(name)
    if deployment.mode != "ab":
        raise InvalidRequest(f"deployment '{name}' is a {deployment.mode}, not an A/B test.", param="name")
    refs = list(deployment.weights)
    stats = health.arm_stats(db, feedback, deployment=name, refs=refs, since=deployment.started_at)
    result = ABReport(
        name=name,
        arms=[ArmReport(ref=ref, weight=deployment.weights[ref], stats=stats[ref]) for ref in refs],
    )
    scores = feedback.scores(refs[:2], since=deployment.started_at, deployment=name)
    a, b = scores[refs[0]], scores[refs[1]]
    if len(a) < MIN_FEEDBACK or len(b) < MIN_FEEDBACK:
        result.note = (
            f"not enough feedback yet: {len(a)} and {len(b)} ratings, {MIN_FEEDBACK} per arm needed "
            f"(as of {utcnow().isoformat(timespec='seconds')})"
        )
        return result
    positives_a, positives_b = sum(s >= 0.5 for s in a), sum(s >= 0.5 for s in b)
    result.z, result.p_value = two_proportion_z(positives_a, len(a), positives_b, len(b))
    result.mean_diff, result.ci_low, result.ci_high = bootstrap_diff(a, b)
    result.significant = result.p_value < ALPHA and (result.ci_low > 0 or result.ci_high < 0)
    return result
