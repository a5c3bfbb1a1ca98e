"""Paired comparison of two versions on the same items, and the release gate read before a canary.

The comparison is paired: both versions answered the same items, so the bootstrap resamples item
indices (not the two score lists independently), which removes between-item variance and needs far
fewer items to see a real drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from stratum.errors import InvalidRequest

GateRule = Literal["no_significant_drop", "strict"]
GATE_RULES: tuple[GateRule, ...] = ("no_significant_drop", "strict")


@dataclass(frozen=True)
class PairedComparison:
    items: int
    baseline_mean: float
    candidate_mean: float
    # Relative drop of the candidate: (baseline - candidate) / baseline; negative = improvement.
    drop: float
    drop_ci_low: float
    drop_ci_high: float
    confidence: float
    # Share of resamples in which the candidate was worse than the baseline.
    p_worse: float


def paired_bootstrap(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Bootstrap CI of the candidate's relative drop over ``items`` paired scores (fixed seed)."""
    if len(baseline) != len(candidate):
        raise InvalidRequest(
            "paired comparison needs the same items: "
            f"{len(baseline)} baseline vs {len(candidate)} candidate scores"
        )
    if not baseline:
        raise InvalidRequest("paired comparison needs at least one item")
    base, cand = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    rng = np.random.default_rng(seed)
    # Resample 2000 × n indices in one array: memory n × 2000 × 8 bytes, fine up to ~100k items.
    index = rng.integers(0, len(base), size=(resamples, len(base)))
    base_means, cand_means = base[index].mean(axis=1), cand[index].mean(axis=1)
    drops = _relative_drop(base_means, cand_means)
    tail = (1.0 - confidence) / 2.0
    return PairedComparison(
        items=len(base),
        baseline_mean=float(base.mean()),
        candidate_mean=float(cand.mean()),
        drop=float(_relative_drop(np.array([base.mean()]), np.array([cand.mean()]))[0]),
        drop_ci_low=float(np.quantile(drops, tail)),
        drop_ci_high=float(np.quantile(drops, 1.0 - tail)),
        confidence=confidence,
        p_worse=float((cand_means < base_means).mean()),
    )


def _relative_drop(base: np.ndarray, cand: np.ndarray) -> np.ndarray:
    # A zero baseline has no relative scale: fall back to the absolute difference.
    safe = np.where(base == 0, 1.0, base)
    return np.asarray((base - cand) / safe)


@dataclass(frozen=True)
class GateConfig:
    metric: str
    max_drop: float = 0.03
    min_items: int = 30
    rule: GateRule = "no_significant_drop"

    def __post_init__(self) -> None:
        if self.rule not in GATE_RULES:
            raise InvalidRequest(f"gate rule must be one of {', '.join(GATE_RULES)}, got {self.rule!r}")
        if not 0 <= self.max_drop < 1:
            raise InvalidRequest(f"max_drop is a fraction in [0, 1), got {self.max_drop}")
        if self.min_items < 1:
            raise InvalidRequest(f"min_items must be at least 1, got {self.min_items}")


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reason: str
    comparison: PairedComparison


def gate(config: GateConfig, comparison: PairedComparison) -> GateVerdict:
    """The rule decides what the confidence interval of the drop must show.

    - ``no_significant_drop`` (default): fail only when the drop is significantly larger than
      ``max_drop`` (the CI's lower bound is above it) — a noisy small suite does not block a release.
    - ``strict``: pass only when the drop is significantly smaller than ``max_drop`` (the CI's upper
      bound is below it) — the candidate must prove it is not worse.
    """
    c = comparison
    numbers = (
        f"{config.metric}: baseline {c.baseline_mean:.4f}, candidate {c.candidate_mean:.4f}, "
        f"drop {c.drop:+.2%} (CI{c.confidence:.0%} {c.drop_ci_low:+.2%} … {c.drop_ci_high:+.2%}), "
        f"{c.items} items"
    )
    if c.items < config.min_items:
        return GateVerdict(False, f"too few items ({c.items} < {config.min_items}); {numbers}", c)
    if config.rule == "strict":
        passed = c.drop_ci_high <= config.max_drop
        why = "upper bound of the drop" + (" ≤ " if passed else " > ")
    else:
        passed = c.drop_ci_low <= config.max_drop
        why = "lower bound of the drop" + (" ≤ " if passed else " > ")
    return GateVerdict(passed, f"{why}{config.max_drop:.0%} allowed; {numbers}", c)
