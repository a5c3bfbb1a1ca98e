"""A/B statistics: the z-test and bootstrap against known values, and the report's guard rails."""

from __future__ import annotations

import math

import pytest

from stratum.deployments.abtest import bootstrap_diff, report, two_proportion_z
from stratum.deployments.service import DeploymentService
from stratum.errors import InvalidRequest
from stratum.registry.feedback import FeedbackService
from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.registry.service import RegistryService
from stratum.storage import Database


def test_two_proportion_z_matches_the_textbook() -> None:
    # 60/100 vs 45/100: pooled p = 0.525, se = sqrt(.525*.475*.02) = 0.07062, z = -2.124, p = 0.0337
    z, p = two_proportion_z(60, 100, 45, 100)
    assert z == pytest.approx(-2.124, abs=1e-3) and p == pytest.approx(0.0337, abs=1e-3)
    assert two_proportion_z(5, 10, 5, 10) == (0.0, 1.0)
    assert two_proportion_z(10, 10, 10, 10) == (0.0, 1.0)


def test_bootstrap_interval() -> None:
    a, b = [0.0, 1.0] * 50, [1.0] * 90 + [0.0] * 10
    diff, low, high = bootstrap_diff(a, b)
    assert diff == pytest.approx(0.4) and 0.25 < low < diff < high < 0.55
    same = bootstrap_diff([0.2, 0.8] * 30, [0.8, 0.2] * 30)
    assert same[1] < 0 < same[2]


def test_report(db: Database) -> None:
    registry = RegistryService(db)
    for port in (9, 8):
        registry.add_model(name="bot", source="upstream", upstream_url=f"http://127.0.0.1:{port}/v1")
    deployments = DeploymentService(db, registry)
    log = ResponseLog(db)
    feedback = FeedbackService(db, log)
    with pytest.raises(InvalidRequest):
        deployments.start_canary(name="bot", candidate="2")
        report(db, deployments, feedback, "bot")
    deployments.stop("bot", actor="t")
    deployments.start_ab(name="bot", arms={"1": 50, "2": 50})
    n = 0
    for ref, ups, downs in (("bot@1", 12, 18), ("bot@2", 25, 5)):
        for i in range(ups + downs):
            n += 1
            log.remember(
                ServedResponse(
                    request_id=f"q{n}",
                    model="bot",
                    version_ref=ref,
                    status=200,
                    latency_ms=10,
                    response_id=f"r{n}",
                    deployment="bot",
                )
            )
            feedback.submit(
                response_id=f"r{n}", thumbs="up" if i < ups else "down", is_admin=True, feedback_id=f"fb{n}"
            )
    log.flush()
    result = report(db, deployments, feedback, "bot")
    assert [a.stats.feedback for a in result.arms] == [30, 30] and [
        a.stats.requests for a in result.arms
    ] == [30, 30]
    assert result.z is not None and result.z > 3 and result.p_value is not None and result.p_value < 0.001
    assert result.mean_diff == pytest.approx(25 / 30 - 12 / 30) and result.significant is True
    assert not math.isnan(result.ci_low or math.nan)
