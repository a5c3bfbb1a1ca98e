import numpy as np
import pytest

from stratum.errors import InvalidRequest
from stratum.evals.stats import GateConfig, gate, paired_bootstrap


def test_identical_runs_have_zero_drop() -> None:
    scores = [0.2, 0.9, 0.5, 1.0] * 10
    result = paired_bootstrap(scores, scores)
    assert result.drop == 0 and result.drop_ci_low == 0 and result.drop_ci_high == 0
    assert result.p_worse == 0


def test_a_clear_drop_is_significant_and_fails_the_gate() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.6, 1.0, size=200)
    cand = base - 0.1  # ~12.5% relative drop on every item
    result = paired_bootstrap(base.tolist(), cand.tolist())
    assert 0.10 < result.drop < 0.15
    assert result.drop_ci_low > 0.03
    verdict = gate(GateConfig(metric="f1"), result)
    assert not verdict.passed
    assert "lower bound" in verdict.reason and "200 items" in verdict.reason


def test_noise_passes_the_default_rule_but_not_the_strict_one() -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(0, 2, size=40).astype(float)
    cand = rng.integers(0, 2, size=40).astype(float)
    result = paired_bootstrap(base.tolist(), cand.tolist())
    assert result.drop_ci_low < 0.03 < result.drop_ci_high  # too noisy to tell
    assert gate(GateConfig(metric="em"), result).passed
    assert not gate(GateConfig(metric="em", rule="strict"), result).passed


def test_an_improvement_passes_even_the_strict_rule() -> None:
    base = [0.5] * 50
    cand = [0.7] * 50
    result = paired_bootstrap(base, cand)
    assert result.drop == pytest.approx(-0.4)
    assert gate(GateConfig(metric="f1", rule="strict"), result).passed


def test_too_few_items_fail_whatever_the_scores() -> None:
    result = paired_bootstrap([1.0] * 5, [1.0] * 5)
    verdict = gate(GateConfig(metric="f1", min_items=30), result)
    assert not verdict.passed and "too few items" in verdict.reason


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    base, cand = [0.1, 0.5, 0.9, 0.3] * 5, [0.2, 0.4, 0.8, 0.3] * 5
    assert paired_bootstrap(base, cand, seed=7) == paired_bootstrap(base, cand, seed=7)


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(InvalidRequest, match="same items"):
        paired_bootstrap([1.0], [1.0, 0.0])
    with pytest.raises(InvalidRequest, match="rule"):
        GateConfig(metric="f1", rule="lenient")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="max_drop"):
        GateConfig(metric="f1", max_drop=1.5)
