"""Routes, fallback chains, circuits and the response cache through the HTTP surface (fake engines)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from stratum.engine.base import GenerationChunk, GenerationRequest
from stratum.engine.embeddings import BUILTIN_ENCODER_NAME
from stratum.engine.fake import FakeEngine
from stratum.engine.upstream import UpstreamEngine
from stratum.errors import Overloaded, StratumError, UpstreamError
from stratum.gateway.app import create_app
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.registry.schemas import ModelVersionPublic
from stratum.settings import Settings
from tests.gateway.conftest import FakeEncoder


class BrokenEngine(FakeEngine):
    """Fails before its first chunk with ``error`` (or stalls ``stall_s`` first)."""

    def __init__(self, error: StratumError | None = None, *, stall_s: float = 0.0) -> None:
        super().__init__()
        self.error, self.stall_s, self.calls = error, stall_s, 0

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        self.calls += 1
        return self._fail()

    async def _fail(self) -> AsyncIterator[GenerationChunk]:
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if self.error is not None:
            raise self.error
        yield GenerationChunk(text="late", prompt_tokens=1, completion_tokens=1, finish_reason="stop")


@dataclass
class Routed:
    client: TestClient
    key: str
    engines: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.client.app.state.stratum  # type: ignore[attr-defined]

    def add(self, name: str, engine: Any = None) -> None:
        self.engines[name] = engine if engine is not None else FakeEngine()
        self.state.registry.add_model(name=name, source="upstream", upstream_url="http://127.0.0.1:9/v1")

    def route(self, model: str, **spec: Any) -> None:
        response = self.client.put(
            f"/admin/v1/routes/{model}", json={"model": model, **spec}, headers=self.headers
        )
        assert response.status_code == 200, response.text

    def chat(self, model: str, text: str, key: str | None = None, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
        headers = {"authorization": f"Bearer {key or self.key}"}
        return self.client.post("/v1/chat/completions", json=body, headers=headers)


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[Routed]:
    settings = Settings(
        home=tmp_path / "home",
        demo_model=False,
        embeddings_model=False,
        circuit_failures=2,
        fallback_timeout=2.0,
        health_interval=0,
    )
    holder = Routed(client=None, key="")  # type: ignore[arg-type]

    def factory(version: ModelVersionPublic) -> Any:
        return holder.engines[version.name]

    with TestClient(create_app(settings, engine_factory=factory)) as client:
        holder.client = client
        holder.key, _ = holder.state.keys.create_key(name="admin-test", role="admin")
        yield holder


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


REFUND = {"name": "refund", "keywords": ["退款", "refund"], "template": "退款请在订单页点击“申请退款”。"}


def test_a_failing_model_falls_back_to_the_rule_responder(routed: Routed) -> None:
    routed.add("bot", BrokenEngine(UpstreamError("upstream returned 500")))
    routed.route("bot", fallback=[{"kind": "rules"}, {"kind": "human"}])
    assert routed.client.put("/admin/v1/rules/refund", json=REFUND, headers=routed.headers).status_code == 200
    response = routed.chat("bot", "我想退款")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "退款请在订单页点击“申请退款”。"
    assert response.headers["x-stratum-fallback"] == "rules"
    assert body["stratum"] == {"fallback": "rules", "backend": "rules", "rule": "refund"}
    streamed = routed.chat("bot", "refund please", stream=True)
    events = _events(streamed)
    assert streamed.headers["x-stratum-fallback"] == "rules" and events[0]["stratum"]["fallback"] == "rules"
    assert (
        "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
        == REFUND["template"]
    )
    assert streamed.text.rstrip().endswith("data: [DONE]")


def test_unmatched_requests_go_to_a_person_and_the_answer_is_fetched_by_ticket(routed: Routed) -> None:
    routed.add("bot", BrokenEngine(Overloaded("engine queue full")))
    routed.route("bot", fallback=[{"kind": "rules"}, {"kind": "human"}])
    state = routed.state
    state.tenancy.create_org(OrgCreate(name="acme"))
    for project in ("support", "other"):
        state.tenancy.create_project("acme", ProjectCreate(name=project))
    user_key, _ = state.keys.create_key(name="u", role="developer", project="acme/support")
    other_key, _ = state.keys.create_key(name="o", role="developer", project="acme/other")
    response = routed.chat("bot", "我的快递三天没动了，帮我查一下", key=user_key)
    assert response.status_code == 200
    ticket = response.headers["x-stratum-ticket"]
    assert response.json()["stratum"]["ticket_id"] == ticket
    assert ticket in response.json()["choices"][0]["message"]["content"]
    own = {"authorization": f"Bearer {user_key}"}
    fetched = routed.client.get(f"/v1/tickets/{ticket}", headers=own).json()
    assert fetched["status"] == "open" and fetched["reason"] == "saturation"
    assert fetched["question"] == "我的快递三天没动了，帮我查一下"
    assert (
        routed.client.get(
            f"/v1/tickets/{ticket}", headers={"authorization": f"Bearer {other_key}"}
        ).status_code
        == 404
    )
    queue = routed.client.get("/admin/v1/queue", headers=routed.headers).json()
    assert [t["id"] for t in queue] == [ticket]
    # A project key is no operator.
    assert (
        routed.client.post(f"/admin/v1/queue/{ticket}/answer", json={"answer": "x"}, headers=own).status_code
        == 403
    )
    answered = routed.client.post(
        f"/admin/v1/queue/{ticket}/answer",
        json={"answer": "已联系快递公司，明天送达。"},
        headers=routed.headers,
    )
    assert answered.status_code == 200
    fetched = routed.client.get(f"/v1/tickets/{ticket}", headers=own).json()
    assert fetched["status"] == "answered" and fetched["answer"] == "已联系快递公司，明天送达。"
    again = routed.client.post(
        f"/admin/v1/queue/{ticket}/answer", json={"answer": "x"}, headers=routed.headers
    )
    assert again.status_code == 409


def test_model_link_timeout_and_safety_triggers(routed: Routed) -> None:
    routed.add("backup", FakeEngine(["备用模型的回答"]))
    routed.add("slow", BrokenEngine(stall_s=5))
    routed.route("slow", fallback=[{"kind": "model", "target": "backup"}], timeout_s=0.2)
    response = routed.chat("slow", "你好")
    assert response.json()["choices"][0]["message"]["content"] == "备用模型的回答"
    assert response.headers["x-stratum-fallback"] == "model:backup"
    assert response.headers["x-stratum-model-version"] == "backup@1"
    routed.engines["backup"].replies.append("安全的回答")
    routed.add("guarded", BrokenEngine(StratumError("blocked by the guard", code="content_blocked")))
    routed.route("guarded", fallback=[{"kind": "model", "target": "backup"}])
    assert routed.chat("guarded", "x").json()["choices"][0]["message"]["content"] == "安全的回答"


def test_triggers_not_listed_do_not_fall_back_and_client_errors_never_do(routed: Routed) -> None:
    routed.add("bot", BrokenEngine(UpstreamError("upstream returned 500")))
    routed.route("bot", fallback=[{"kind": "human"}], triggers=["timeout"])
    response = routed.chat("bot", "hi")
    assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_error"
    assert routed.client.get("/admin/v1/queue", headers=routed.headers).json() == []


def test_backends_fail_over_by_priority(routed: Routed) -> None:
    routed.add("local", BrokenEngine(UpstreamError("boom")))
    routed.add("cloud", FakeEngine(["from the cloud"]))
    routed.route("assistant", backends=[{"model": "local"}, {"model": "cloud", "priority": 1}])
    response = routed.chat("assistant", "hi")
    assert response.json()["choices"][0]["message"]["content"] == "from the cloud"
    assert response.headers["x-stratum-fallback"] == "none"
    assert response.headers["x-stratum-backend"] == "cloud@1"


def test_circuit_opens_on_a_failing_upstream_and_skips_it(routed: Routed) -> None:
    failing = BrokenEngine(UpstreamError("upstream returned 503"))
    routed.add("flaky", failing)
    for _ in range(2):  # circuit_failures=2
        assert routed.chat("flaky", "hi").status_code == 502
    assert failing.calls == 2
    response = routed.chat("flaky", "hi")
    assert response.status_code == 502 and response.json()["error"]["code"] == "circuit_open"
    assert failing.calls == 2  # not even tried
    backends = routed.client.get("/admin/v1/backends", headers=routed.headers).json()
    assert {"backend": "flaky@1", "circuit": "open", "consecutive_failures": 2} in backends
    metrics = routed.client.get("/metrics").text
    assert 'stratum_backend_circuit_state{backend="flaky@1"} 2.0' in metrics
    assert 'stratum_backend_errors_total{backend="flaky@1",trigger="error"} 2.0' in metrics


def _billed(routed: Routed, **who: str) -> int:
    routed.state.audit_writer.flush()  # usage records are written by the batched writer
    return routed.state.usage.billed_tokens(**who)


def test_deterministic_requests_hit_the_cache_per_tenant_and_version(routed: Routed) -> None:
    engine = FakeEngine()
    routed.add("echo", engine)
    first = routed.chat("echo", "缓存我", temperature=0)
    assert first.headers["x-stratum-cache"] == "miss"
    key_id = routed.state.keys.verify(routed.key).key_id
    billed = _billed(routed, key_id=key_id)
    second = routed.chat("echo", "  缓存我 ", temperature=0)  # normalised: same request
    assert second.headers["x-stratum-cache"] == "hit"
    assert second.json()["choices"][0]["message"]["content"] == "缓存我"
    # The response shows the answer's usage; the hit is billed its prompt tokens only.
    assert (
        second.json()["usage"]
        == first.json()["usage"]
        == {
            "prompt_tokens": 3,
            "completion_tokens": 3,
            "total_tokens": 6,
        }
    )
    assert _billed(routed, key_id=key_id) - billed == 3
    assert len(engine.requests) == 1
    streamed = routed.chat("echo", "缓存我", temperature=0, stream=True)
    assert streamed.headers["x-stratum-cache"] == "hit"
    events = _events(streamed)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == "缓存我"
    assert events[0]["stratum"]["cache"] == "exact"
    assert routed.chat("echo", "缓存我").headers["x-stratum-cache"] == "bypass"  # temperature 1, no seed
    assert routed.chat("echo", "缓存我", temperature=0.7, seed=3).headers["x-stratum-cache"] == "miss"
    # Another tenant never sees this tenant's entries.
    state = routed.state
    state.tenancy.create_org(OrgCreate(name="acme"))
    state.tenancy.create_project("acme", ProjectCreate(name="p"))
    other, _ = state.keys.create_key(name="o", role="developer", project="acme/p")
    assert routed.chat("echo", "缓存我", key=other, temperature=0).headers["x-stratum-cache"] == "miss"
    # A new version behind the name changes the key; explicit invalidation empties the cache.
    state.registry.add_model(name="echo", source="upstream", upstream_url="http://127.0.0.1:9/v1")
    state.pool._refs.clear()
    assert routed.chat("echo", "缓存我", temperature=0).headers["x-stratum-cache"] == "miss"
    assert routed.chat("echo", "缓存我", temperature=0).headers["x-stratum-cache"] == "hit"
    dropped = routed.client.delete("/admin/v1/cache?model=echo", headers=routed.headers).json()
    assert dropped["dropped"] >= 1
    assert routed.chat("echo", "缓存我", temperature=0).headers["x-stratum-cache"] == "miss"


def test_fallback_answers_are_never_cached(routed: Routed) -> None:
    routed.add("bot", BrokenEngine(UpstreamError("boom")))
    routed.route("bot", fallback=[{"kind": "human"}])
    tickets = {routed.chat("bot", "同一个问题", temperature=0).headers["x-stratum-ticket"] for _ in range(2)}
    assert len(tickets) == 2


def test_routing_admin_is_for_platform_admins(routed: Routed) -> None:
    state = routed.state
    state.tenancy.create_org(OrgCreate(name="acme"))
    state.tenancy.create_project("acme", ProjectCreate(name="p"))
    org_admin, _ = state.keys.create_key(name="oa", role="org_admin", project="acme")
    headers = {"authorization": f"Bearer {org_admin}"}
    for method, path, body in (
        ("GET", "/admin/v1/routes", None),
        ("PUT", "/admin/v1/routes/x", {"model": "x"}),
        ("DELETE", "/admin/v1/routes/x", None),
        ("GET", "/admin/v1/rules", None),
        ("PUT", "/admin/v1/rules/r", REFUND | {"name": "r"}),
        ("GET", "/admin/v1/queue", None),
        ("GET", "/admin/v1/backends", None),
        ("DELETE", "/admin/v1/cache", None),
    ):
        response = routed.client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["rule"] == "rbac.org_admin"
    mismatch = routed.client.put("/admin/v1/routes/a", json={"model": "b"}, headers=routed.headers)
    assert mismatch.status_code == 400
    bad = routed.client.put(
        "/admin/v1/routes/a",
        json={"model": "a", "fallback": [{"kind": "human"}, {"kind": "rules"}]},
        headers=routed.headers,
    )
    assert bad.status_code == 400 or bad.status_code == 422


def test_an_upstream_cut_mid_stream_ends_with_an_error_event(routed: Routed) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            yield b'data: {"choices":[{"index":0,"delta":{"content":"\xe4\xbd\xa0\xe5\xa5\xbd"}}]}\n\n'
            raise httpx.ReadError("connection reset by peer")

        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    routed.add("cut", UpstreamEngine("http://up/v1", model="m", transport=httpx.MockTransport(handler)))
    response = routed.chat("cut", "hi", stream=True)
    assert response.status_code == 200
    events = _events(response)
    assert events[1]["choices"][0]["delta"]["content"] == "你好"
    assert events[-1]["error"]["code"] == "upstream_stream_cut"
    assert "[DONE]" not in response.text
    whole = routed.chat("cut", "hi")
    assert whole.status_code == 502 and whole.json()["error"]["code"] == "upstream_stream_cut"


def test_text_completions_follow_routes_too(routed: Routed) -> None:
    routed.add("bot", BrokenEngine(UpstreamError("boom")))
    routed.route("bot", fallback=[{"kind": "rules"}, {"kind": "human"}])
    routed.client.put("/admin/v1/rules/refund", json=REFUND, headers=routed.headers)
    body = {"model": "bot", "prompt": ["退款流程是什么", "讲个笑话"]}
    response = routed.client.post("/v1/completions", json=body, headers=routed.headers)
    assert response.status_code == 200, response.text
    texts = [c["text"] for c in response.json()["choices"]]
    # The batch is answered by one link: the rule matched on the first prompt does not match
    # the second, so the whole request went on to the person.
    assert response.headers["x-stratum-fallback"] == "human"
    ticket = response.headers["x-stratum-ticket"]
    assert len(texts) == 2 and all(ticket in text for text in texts)
    single = routed.client.post(
        "/v1/completions", json={"model": "bot", "prompt": "退款"}, headers=routed.headers
    )
    assert single.headers["x-stratum-fallback"] == "rules"
    assert single.json()["choices"][0]["text"] == REFUND["template"]


@pytest.fixture
def semantic(tmp_path: Path) -> Iterator[Routed]:
    settings = Settings(
        home=tmp_path / "home",
        demo_model=False,
        embeddings_model=False,
        semantic_cache=0.9,
        health_interval=0,
    )
    holder = Routed(client=None, key="")  # type: ignore[arg-type]

    def factory(version: ModelVersionPublic) -> Any:
        return FakeEncoder() if version.kind == "embedding" else holder.engines[version.name]

    with TestClient(create_app(settings, engine_factory=factory)) as client:
        holder.client = client
        holder.key, _ = holder.state.keys.create_key(name="admin-test", role="admin")
        yield holder


def test_semantic_hits_with_the_encoder_and_exact_only_without_it(semantic: Routed) -> None:
    engine = FakeEngine(["第一次的回答", "第二次的回答", "第三次的回答"])
    semantic.add("bot", engine)
    # No encoder registered yet: the semantic path is skipped, never an error.
    assert semantic.chat("bot", "请问如何申请退款", temperature=0).headers["x-stratum-cache"] == "miss"
    assert semantic.chat("bot", "请问如何申请退款呀", temperature=0).headers["x-stratum-cache"] == "miss"
    semantic.state.registry.add_model(
        name=BUILTIN_ENCODER_NAME, kind="embedding", source="upstream", upstream_url="http://127.0.0.1:9/v1"
    )
    assert semantic.chat("bot", "请问如何申请退款", temperature=0).headers["x-stratum-cache"] == "hit"
    # Stored with the encoder available from now on.
    first = semantic.chat("bot", "我要怎样才能申请退款", temperature=0)
    assert first.headers["x-stratum-cache"] == "miss"
    close = semantic.chat("bot", "我要怎样才能申请退款？", temperature=0)
    assert close.headers["x-stratum-cache"] == "hit"
    assert close.json()["stratum"]["cache"] == "semantic"
    assert (
        close.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    )
    assert len(engine.requests) == 3


def test_unknown_models_are_still_404_whatever_their_name(routed: Routed) -> None:
    for name in ("不存在", "no-such-model", "a" * 300):
        response = routed.chat(name, "你好", temperature=0)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "model_not_found"
