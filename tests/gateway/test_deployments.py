"""The gateway routes a deployed name by its deployment and records outcomes for the controller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stratum.deployments.schemas import Thresholds
from stratum.engine.base import GenerationChunk, GenerationRequest, ModelInfo
from stratum.engine.fake import FakeEngine
from stratum.errors import EngineError, UpstreamError
from stratum.gateway.app import create_app
from stratum.registry.schemas import ModelVersionPublic
from stratum.settings import Settings


class BrokenEngine(FakeEngine):
    """Fails every generation like an upstream answering 500."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        raise UpstreamError("upstream returned 500: boom")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    # The background controller is slowed down: the tests drive it by hand.
    settings = Settings(
        home=tmp_path / "home", demo_model=False, embeddings_model=False, canary_interval=3600
    )

    def factory(version: ModelVersionPublic) -> FakeEngine:
        if version.upstream_model == "unloadable":
            raise EngineError("the weights of this version cannot be loaded")
        engine = BrokenEngine if version.upstream_model == "broken" else FakeEngine
        made = engine([])
        made.info = ModelInfo(architecture="FakeEngine", context_length=4096)
        return made

    with TestClient(create_app(settings, engine_factory=factory)) as client:
        state = client.app.state.stratum  # type: ignore[attr-defined]
        for upstream_model in ("good", "broken", "good", "unloadable"):
            state.registry.add_model(
                name="bot",
                source="upstream",
                upstream_url="http://127.0.0.1:9/v1",
                upstream_model=upstream_model,
            )
        key, _ = state.keys.create_key(name="t")
        client.headers["authorization"] = f"Bearer {key}"
        yield client


def _ask(client: TestClient, n: int, **extra: object) -> list[tuple[int, str]]:
    out = []
    for i in range(n):
        body = {"model": "bot", "messages": [{"role": "user", "content": f"你好 {i}"}], **extra}
        response = client.post("/v1/chat/completions", json=body)
        out.append((response.status_code, response.headers.get("x-stratum-model-version", "")))
    return out


def _sync(client: TestClient) -> list[object]:
    state = client.app.state.stratum  # type: ignore[attr-defined]
    state.responses.flush()
    applied = state.canary.tick()
    state.router.refresh()
    return applied


def test_broken_candidate_is_rolled_back(client: TestClient) -> None:
    state = client.app.state.stratum  # type: ignore[attr-defined]
    state.deployments.start_canary(
        name="bot", candidate="2", stable="1", steps=[30, 100], thresholds=Thresholds(min_samples=5)
    )
    state.router.refresh()
    served = _ask(client, 40)
    assert {ref for _, ref in served} == {"bot@1", "bot@2"}
    assert all(status == 502 for status, ref in served if ref == "bot@2")
    assert all(status == 200 for status, ref in served if ref == "bot@1")
    # A pinned version is never re-routed by the deployment.
    pinned = client.post(
        "/v1/chat/completions", json={"model": "bot@3", "messages": [{"role": "user", "content": "x"}]}
    )
    assert pinned.headers["x-stratum-model-version"] == "bot@3"
    [(_name, verdict)] = _sync(client)  # type: ignore[misc]
    assert verdict.action == "rollback" and verdict.candidate.error_rate == 1.0
    assert {ref for _, ref in _ask(client, 10)} == {"bot@1"}


def test_healthy_candidate_is_promoted(client: TestClient) -> None:
    state = client.app.state.stratum  # type: ignore[attr-defined]
    state.deployments.start_canary(
        name="bot",
        candidate="3",
        stable="1",
        steps=[50, 100],
        interval_s=0.01,
        thresholds=Thresholds(min_samples=3),
    )
    state.router.refresh()
    assert all(status == 200 for status, _ in _ask(client, 20))
    [(_, verdict)] = _sync(client)  # type: ignore[misc]
    assert verdict.action == "promote"
    assert set(_ask(client, 5)) == {(200, "bot@3")}
    assert state.deployments.get("bot").status == "promoted"


def test_ab_assignment_sticks_to_the_user(client: TestClient) -> None:
    state = client.app.state.stratum  # type: ignore[attr-defined]
    state.deployments.start_ab(name="bot", arms={"1": 50, "3": 50})
    state.router.refresh()
    arms = {}
    for user in (f"用户-{i}" for i in range(30)):
        refs = {ref for _, ref in _ask(client, 3, user=user)}
        assert len(refs) == 1
        arms[user] = refs.pop()
    assert set(arms.values()) == {"bot@1", "bot@3"}
    # Without a user field the key is the subject: one key, one arm.
    assert len({ref for _, ref in _ask(client, 6)}) == 1


def test_low_feedback_rolls_the_candidate_back(client: TestClient) -> None:
    """A candidate that answers (200) but badly: users' thumbs-down are the quality signal."""
    state = client.app.state.stratum  # type: ignore[attr-defined]
    state.deployments.start_canary(
        name="bot",
        candidate="3",
        stable="1",
        steps=[50, 100],
        interval_s=3600,
        thresholds=Thresholds(min_samples=5, min_feedback=5),
    )
    state.router.refresh()
    rated = {"bot@1": 0, "bot@3": 0}
    for i in range(40):
        body = {"model": "bot", "messages": [{"role": "user", "content": f"问题 {i}"}]}
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
        version = response.headers["x-stratum-model-version"]
        # Stable pleases 9 users in 10, the candidate 1 in 2: a drop far beyond 3 points.
        good = i % 10 != 0 if version == "bot@1" else i % 2 == 0
        feedback = {"response_id": response.json()["id"], "thumbs": "up" if good else "down"}
        assert client.post("/v1/feedback", json=feedback).status_code == 201
        rated[version] += 1
    assert min(rated.values()) >= 5
    [(_, verdict)] = _sync(client)  # type: ignore[misc]
    assert verdict.action == "rollback" and verdict.candidate.error_rate == 0.0
    assert any(reason.startswith("feedback score") for reason in verdict.reasons)
    event = state.deployments.history("bot")[-1]
    assert event.action == "rolled_back" and event.detail["candidate"]["feedback"] == rated["bot@3"]


def test_text_completions_follow_the_deployment_too(client: TestClient) -> None:
    state = client.app.state.stratum  # type: ignore[attr-defined]
    state.deployments.start_ab(name="bot", arms={"1": 50, "3": 50})
    state.router.refresh()
    served = set()
    for i in range(20):
        response = client.post("/v1/completions", json={"model": "bot", "prompt": "你好", "user": f"u{i}"})
        assert response.status_code == 200
        served.add(response.headers["x-stratum-model-version"])
        rating = {"response_id": response.json()["id"], "score": 0.5}
        assert client.post("/v1/feedback", json=rating).status_code == 201
    assert served == {"bot@1", "bot@3"}


def test_two_gateways_agree(client: TestClient, tmp_path: Path) -> None:
    """Gateway A serves the traffic; gateway B (same store) judges it and rolls back; A follows."""
    settings = Settings(
        home=tmp_path / "home", demo_model=False, embeddings_model=False, canary_interval=3600
    )
    with TestClient(create_app(settings, engine_factory=lambda v: FakeEngine([]))) as other:
        a = client.app.state.stratum  # type: ignore[attr-defined]
        b = other.app.state.stratum  # type: ignore[attr-defined]
        a.deployments.start_canary(
            name="bot", candidate="2", stable="1", steps=[50, 100], thresholds=Thresholds(min_samples=5)
        )
        a.router.refresh()
        served = _ask(client, 60)
        assert sum(ref == "bot@2" for _, ref in served) >= 5
        a.responses.flush()  # what A's flush task does every STRATUM_RESPONSE_FLUSH_INTERVAL
        [(_, verdict)] = b.canary.tick()
        assert verdict.action == "rollback"
        assert a.canary.tick() == []  # the change is applied once
        a.router.refresh()  # what A's refresh task does every second
        assert {ref for _, ref in _ask(client, 5)} == {"bot@1"}


def test_a_candidate_that_cannot_load_counts_as_failing(client: TestClient) -> None:
    state = client.app.state.stratum  # type: ignore[attr-defined]
    state.deployments.start_canary(
        name="bot", candidate="4", stable="1", steps=[50, 100], thresholds=Thresholds(min_samples=5)
    )
    state.router.refresh()
    served = _ask(client, 30)
    assert {(status, ref) for status, ref in served} == {(200, "bot@1"), (500, "bot@4")}
    [(_, verdict)] = _sync(client)  # type: ignore[misc]
    assert verdict.action == "rollback" and verdict.candidate.errors == verdict.candidate.requests
