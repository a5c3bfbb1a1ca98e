"""Percentiles for latency samples, without numpy (the harness should not depend on heavy imports)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, numpy's default ("linear").

    Returns NaN for no samples, so an empty series shows up as "n/a" instead of a fake zero.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def p50_p99(values: Sequence[float]) -> tuple[float, float]:
    return percentile(values, 50.0), percentile(values, 99.0)


def ms(seconds: float) -> str:
    """Seconds as milliseconds for the table ("n/a" for a missing value)."""
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan
