"""Deployments: planning canaries and A/B tests, the health verdict, applying it once, the router."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from stratum.deployments.controller import CanaryController
from stratum.deployments.health import judge, percentile
from stratum.deployments.router import DeploymentRouter, pick, sticky_bucket
from stratum.deployments.schemas import ArmStats, Thresholds, Verdict
from stratum.deployments.service import DeploymentService
from stratum.errors import Conflict, InvalidRequest, ModelNotFound, NotFound
from stratum.governance.audit import AuditService
from stratum.registry.feedback import FeedbackService
from stratum.registry.lineage import LineageService
from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.registry.service import RegistryService
from stratum.storage import Database, utcnow


@pytest.fixture
def service(db: Database) -> DeploymentService:
    registry = RegistryService(db)
    for port in (9, 8, 7):
        registry.add_model(name="kefu", source="upstream", upstream_url=f"http://127.0.0.1:{port}/v1")
    registry.add_model(name="emb", kind="embedding", source="upstream", upstream_url="http://127.0.0.1:9/v1")
    return DeploymentService(db, registry)


def _arm(
    ref: str,
    *,
    requests: int = 100,
    errors: int = 0,
    p99: float = 100.0,
    feedback: int = 0,
    mean: float | None = None,
) -> ArmStats:
    return ArmStats(
        ref=ref,
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        p99_ms=p99,
        feedback=feedback,
        mean_score=mean,
    )


def test_start_canary_defaults_to_the_version_before_latest(service: DeploymentService, db: Database) -> None:
    deployment = service.start_canary(name="kefu", candidate="3", actor="alice")
    assert (deployment.stable_ref, deployment.candidate_ref) == ("kefu@2", "kefu@3")
    assert deployment.weights == {"kefu@2": 95.0, "kefu@3": 5.0} and deployment.steps == [5, 20, 100]
    [event] = service.history("kefu")
    assert event.action == "canary_started" and event.detail["thresholds"]["error_rate"] == 0.01
    [entry] = AuditService(db).list_entries()
    assert (entry.action, entry.target, entry.actor) == ("deployment.canary_started", "kefu", "alice")
    assert AuditService(db).verify().ok
    edges = LineageService(db).upstream(("deployment", "kefu"))
    assert {e.source_id for e in edges} == {"kefu@2", "kefu@3"}
    with pytest.raises(Conflict):
        service.start_canary(name="kefu", candidate="2", stable="1")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"candidate": "9"}, ModelNotFound),
        ({"candidate": "3", "steps": [50, 20, 100]}, InvalidRequest),
        ({"candidate": "3", "steps": [5, 50]}, InvalidRequest),
        ({"candidate": "3", "steps": [100]}, InvalidRequest),
        ({"candidate": "3", "steps": [0, 100]}, InvalidRequest),
        ({"candidate": "3", "interval_s": 0}, InvalidRequest),
        ({"candidate": "2", "stable": "2"}, InvalidRequest),
        ({"candidate": "emb@1"}, InvalidRequest),
    ],
)
def test_bad_canaries_are_refused(service: DeploymentService, kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        service.start_canary(name="kefu", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        service.get("kefu")


def test_judge_rules() -> None:
    now = utcnow()
    service_like = dict(
        name="bot",
        mode="canary",
        status="canary",
        stable_ref="s",
        candidate_ref="c",
        weights={"s": 80, "c": 20},
        steps=[20, 50, 100],
        step_index=0,
        interval_s=60,
        thresholds=Thresholds(min_samples=10, min_feedback=5),
        created_by="t",
        started_at=now,
        step_started_at=now,
        updated_at=now,
    )
    from stratum.deployments.schemas import DeploymentPublic

    deployment = DeploymentPublic(**service_like)  # type: ignore[arg-type]
    later = now + timedelta(seconds=61)

    def verdict(stable: ArmStats, candidate: ArmStats, at=later) -> Verdict:  # type: ignore[no-untyped-def]
        return judge(deployment, {"s": stable, "c": candidate}, now=at)

    healthy = verdict(_arm("s"), _arm("c"))
    assert healthy.action == "step" and "healthy" in healthy.reasons[0]
    assert verdict(_arm("s"), _arm("c"), at=now).action == "wait"  # interval not over
    assert verdict(_arm("s"), _arm("c", requests=5)).action == "wait"  # too few samples
    errors = verdict(_arm("s", errors=1), _arm("c", errors=3))  # +2 pp > +1 pp
    assert errors.action == "rollback" and "error rate 3.0% vs stable 1.0%" in errors.reasons[0]
    assert verdict(_arm("s", errors=1), _arm("c", errors=2)).action == "step"  # +1 pp is tolerated
    # A failing candidate is rolled back even before stable has its samples, and before the interval.
    early = verdict(_arm("s", requests=3), _arm("c", requests=10, errors=10), at=now)
    assert early.action == "rollback"
    slow = verdict(_arm("s", p99=100), _arm("c", p99=350))
    assert slow.action == "rollback" and "p99 350 ms vs stable 100 ms" in slow.reasons[0]
    worse = verdict(_arm("s", feedback=5, mean=0.9), _arm("c", feedback=5, mean=0.85))
    assert worse.action == "rollback" and "feedback score 0.850 vs stable 0.900" in worse.reasons[0]
    assert verdict(_arm("s", feedback=4, mean=0.9), _arm("c", feedback=5, mean=0.1)).action == "step"
    last = DeploymentPublic(**{**service_like, "step_index": 1})  # type: ignore[arg-type]
    assert judge(last, {"s": _arm("s"), "c": _arm("c")}, now=later).action == "promote"


def _outcomes(
    log: ResponseLog,
    ref: str,
    *,
    count: int,
    status: int = 200,
    latency: float = 50.0,
    at: datetime | None = None,
) -> None:
    for i in range(count):
        log.remember(
            ServedResponse(
                request_id=f"{ref}-{status}-{i}",
                model="kefu",
                version_ref=ref,
                status=status,
                latency_ms=latency,
                deployment="kefu",
                at=at or utcnow(),
            )
        )
    log.flush()


def test_controller_rolls_back_once_with_numbers(service: DeploymentService, db: Database) -> None:
    log = ResponseLog(db)
    controller = CanaryController(db, service, FeedbackService(db, log))
    service.start_canary(name="kefu", candidate="3", interval_s=3600, thresholds=Thresholds(min_samples=10))
    _outcomes(log, "kefu@2", count=40)
    _outcomes(log, "kefu@3", count=8, status=502)
    assert controller.tick() == []  # 8 < min_samples
    _outcomes(log, "kefu@3", count=2, status=502)
    _outcomes(log, "kefu@3", count=5, status=404)  # client errors say nothing about the version
    [(name, verdict)] = controller.tick()
    assert (name, verdict.action) == ("kefu", "rollback")
    assert controller.tick() == []
    deployment = service.get("kefu")
    assert deployment.status == "rolled_back" and deployment.weights == {"kefu@2": 100.0}
    event = service.history("kefu")[-1]
    assert event.action == "rolled_back" and event.actor == "controller"
    assert event.detail["candidate"]["errors"] == 10 and event.detail["candidate"]["requests"] == 10
    assert event.detail["stable"]["requests"] == 40 and "error rate 100.0%" in event.detail["reasons"][0]
    assert AuditService(db).list_entries()[0].action == "deployment.rolled_back"
    # A stale verdict (another gateway judged the same step) changes nothing.
    assert service.apply("kefu", verdict, step_index=0) is None


def test_controller_steps_then_promotes(service: DeploymentService, db: Database) -> None:
    log = ResponseLog(db)
    controller = CanaryController(db, service, FeedbackService(db, log))
    service.start_canary(
        name="kefu", candidate="3", steps=[10, 50, 100], interval_s=1, thresholds=Thresholds(min_samples=5)
    )
    _outcomes(log, "kefu@2", count=20)
    _outcomes(log, "kefu@3", count=6)
    future = utcnow() + timedelta(seconds=2)
    assert [v.action for _, v in controller.tick(now=future)] == ["step"]
    assert service.get("kefu").weights == {"kefu@2": 50.0, "kefu@3": 50.0}
    assert controller.tick(now=future) == []  # the new step has not lasted its interval
    # Samples of the previous step do not count for this one.
    assert controller.tick(now=future + timedelta(seconds=2)) == []
    _outcomes(log, "kefu@3", count=5, at=future + timedelta(seconds=1))
    assert [v.action for _, v in controller.tick(now=future + timedelta(seconds=2))] == ["promote"]
    deployment = service.get("kefu")
    assert deployment.status == "promoted" and deployment.stable_ref == "kefu@3"
    assert [e.action for e in service.history("kefu")] == ["canary_started", "step", "promoted"]
    # The next canary compares against the promoted version.
    assert service.start_canary(name="kefu", candidate="1").stable_ref == "kefu@3"


def test_ab_split_and_router(service: DeploymentService) -> None:
    deployment = service.start_ab(name="kefu", arms={"1": 30, "kefu@2": 70})
    assert deployment.weights == {"kefu@1": 30.0, "kefu@2": 70.0}
    router = DeploymentRouter(service.routing_table, seed=1)
    router.refresh()
    users = [f"用户{i}" for i in range(2000)]
    first = {u: router.route("kefu", subject=u).ref for u in users}  # type: ignore[union-attr]
    assert all(router.route("kefu", subject=u).ref == first[u] for u in users[:200])  # type: ignore[union-attr]
    share = sum(ref == "kefu@1" for ref in first.values()) / len(users)
    assert 0.26 < share < 0.34
    assert router.route("kefu@1", subject="x") is None and router.route("other", subject="x") is None
    with pytest.raises(InvalidRequest):
        service.start_ab(name="kefu", arms={"1": 50, "2": 40})
    service.stop("kefu", actor="t")
    router.refresh()
    assert router.route("kefu", subject="x") is None


def test_canary_draws_follow_the_weights(service: DeploymentService) -> None:
    deployment = service.start_canary(name="kefu", candidate="3", steps=[20, 100])
    rng = random.Random(7)
    draws = [pick(deployment, subject="same-key", rng=rng) for _ in range(5000)]
    assert 0.18 < draws.count("kefu@3") / len(draws) < 0.22


def test_helpers() -> None:
    assert percentile([], 99) is None
    assert percentile(list(range(1, 101)), 99) == 99 and percentile([5.0], 99) == 5.0
    assert 0 <= sticky_bucket("a", "b") < 10_000 and sticky_bucket("a", "b") == sticky_bucket("a", "b")


def test_arm_stats_p99_in_the_store(service: DeploymentService, db: Database) -> None:
    from stratum.deployments.health import arm_stats

    log = ResponseLog(db)
    since = utcnow() - timedelta(seconds=1)
    for i in range(1, 201):
        _outcomes(log, "kefu@2", count=1, latency=float(i))
    _outcomes(log, "kefu@2", count=3, status=503, latency=5000.0)
    _outcomes(log, "kefu@2", count=4, status=429, latency=9000.0)  # the client's quota: not judged
    stats = arm_stats(db, FeedbackService(db, log), deployment="kefu", refs=["kefu@2", "kefu@3"], since=since)
    expected = percentile([float(i) for i in range(1, 201)] + [5000.0] * 3, 99)
    assert (
        stats["kefu@2"].requests == 203 and stats["kefu@2"].errors == 3 and stats["kefu@2"].p99_ms == expected
    )
    assert stats["kefu@3"].requests == 0 and stats["kefu@3"].p99_ms is None
