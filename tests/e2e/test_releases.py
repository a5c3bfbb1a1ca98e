"""Releases end to end: canary rollback and promotion, A/B with feedback, lineage — through the
``openai`` SDK, raw HTTP and the CLI against a real server process and a mock upstream.

The mock upstream answers model ``broken`` with HTTP 500 and anything else with a short SSE reply.
The server checks canaries every second (``STRATUM_CANARY_INTERVAL=1``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stratum.deployments.service import DeploymentService
from stratum.registry.service import RegistryService
from stratum.storage import Database
from tests.e2e.conftest import ADMIN_KEY, Server, free_port, start_server, stop_server

MESSAGES = [{"role": "user", "content": "退货政策是什么？"}]
# Bounds of the request loops: the test stops by itself whatever the server does.
LOOP_TIMEOUT_S = 60.0


def _upstream_app() -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        if body.get("model") == "broken":
            error = {"error": {"message": "candidate crashed", "type": "server_error", "code": None}}
            return JSONResponse(error, status_code=500)

        async def events() -> AsyncIterator[str]:
            for piece in (f"{body.get('model')}:", "七天", "无理由退货。"):
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        _upstream_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "mock upstream did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("releases-home")
    env = {
        "STRATUM_CANARY_INTERVAL": "1",
        "STRATUM_RESPONSE_FLUSH_INTERVAL": "0.5",
        "STRATUM_EMBEDDINGS_MODEL": "false",
    }
    running = start_server(home, extra_env=env)
    yield running
    stop_server(running)


def _deployments(server: Server) -> DeploymentService:
    db = Database(f"sqlite:///{server.home / 'stratum.db'}")
    return DeploymentService(db, RegistryService(db))


def _client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0)


def _ask(client: openai.OpenAI, model: str, **extra: object) -> tuple[int, str, str | None]:
    """(status, served version, response id) of one chat completion."""
    try:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **extra)  # type: ignore[arg-type]
    except openai.APIStatusError as error:
        return error.status_code, error.response.headers.get("x-stratum-model-version", ""), None
    return raw.status_code, raw.headers["x-stratum-model-version"], raw.parse().id


def _add(server: Server, name: str, upstream: str, upstream_model: str) -> None:
    server.cli("models", "add", name, "--upstream", upstream, "--upstream-model", upstream_model)


@pytest.mark.slow
def test_broken_candidate_is_rolled_back_automatically(gateway: Server, upstream: str) -> None:
    _add(gateway, "bot", upstream, "good-a")
    _add(gateway, "bot", upstream, "broken")
    gateway.cli(
        "deploy",
        "bot",
        "--candidate",
        "2",
        "--steps",
        "10,50,100",
        "--interval",
        "10m",
        "--min-samples",
        "10",
    )
    deployments = _deployments(gateway)
    started = deployments.get("bot").started_at
    sent = {"bot@1": 0, "bot@2": 0}
    failures = 0
    failed_at: list[float] = []  # when each candidate failure came back
    t0 = time.monotonic()
    with _client(gateway) as client:
        while deployments.get("bot").status == "canary":
            assert time.monotonic() - t0 < LOOP_TIMEOUT_S, f"no rollback after {sent}"
            status, version, _ = _ask(client, "bot")
            sent[version] += 1
            failures += status != 200
            if status != 200:
                failed_at.append(time.monotonic())
            assert (status == 200) == (version == "bot@1"), (status, version)
        detected = time.monotonic() - t0
        # From the failure that reached --min-samples to the moment this client saw the rollback.
        after_evidence = time.monotonic() - failed_at[9]
        rolled_back = deployments.history("bot")[-1]
        assert rolled_back.action == "rolled_back" and rolled_back.actor == "controller"
        assert rolled_back.weights == {"bot@1": 100.0}
        candidate = rolled_back.detail["candidate"]
        assert candidate["error_rate"] == 1.0 and candidate["requests"] >= 10
        print(
            f"\nrollback detection: {sent['bot@2']} candidate requests ({failures} failed) of "
            f"{sum(sent.values())} in all, {detected:.1f} s after the first request, "
            f"{(rolled_back.at - started).total_seconds():.1f} s after the canary started; "
            f"the controller saw {candidate['requests']} candidate requests; "
            f"{after_evidence:.2f} s from the 10th failure to the rollback"
        )
        time.sleep(1.5)  # every gateway re-reads the routing table within a second
        assert {_ask(client, "bot")[:2] for _ in range(20)} == {(200, "bot@1")}
    history = gateway.cli("deploy", "history", "bot").stdout
    assert "rolled_back" in history and "error rate 100.0%" in history and "bot@2" in history
    status = json.loads(gateway.cli("deploy", "status", "bot", "--json").stdout)
    assert status["status"] == "rolled_back"
    audit = json.loads(gateway.cli("audit", "list", "--limit", "1000", "--json").stdout)
    assert [e["action"] for e in audit if e["target"] == "bot"][:2] == [
        "deployment.rolled_back",
        "deployment.canary_started",
    ]


@pytest.mark.slow
def test_healthy_candidate_reaches_100_percent(gateway: Server, upstream: str) -> None:
    _add(gateway, "steady", upstream, "good-a")
    _add(gateway, "steady", upstream, "good-b")
    gateway.cli(
        "deploy",
        "steady",
        "--candidate",
        "2",
        "--steps",
        "20,50,100",
        "--interval",
        "2s",
        "--min-samples",
        "5",
    )
    deployments = _deployments(gateway)
    t0 = time.monotonic()
    with _client(gateway) as client:
        while deployments.get("steady").status == "canary":
            assert time.monotonic() - t0 < LOOP_TIMEOUT_S
            status, _, _ = _ask(client, "steady")
            assert status == 200
        time.sleep(1.5)
        assert {_ask(client, "steady")[:2] for _ in range(10)} == {(200, "steady@2")}
    events = deployments.history("steady")
    assert [e.action for e in events] == ["canary_started", "step", "promoted"]
    assert events[1].weights == {"steady@1": 50.0, "steady@2": 50.0}
    assert "healthy for" in gateway.cli("deploy", "history", "steady").stdout


@pytest.mark.slow
def test_ab_sticky_split_feedback_and_report(gateway: Server, upstream: str) -> None:
    _add(gateway, "ab-bot", upstream, "good-a")
    _add(gateway, "ab-bot", upstream, "good-b")
    gateway.cli("ab", "start", "ab-bot", "--arms", "1=50,2=50")
    time.sleep(1.5)
    ratings = {"ab-bot@1": 0, "ab-bot@2": 0}
    with (
        _client(gateway) as client,
        httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as http,
    ):
        for i in range(60):
            user = f"用户-{i}"
            served = [_ask(client, "ab-bot", user=user) for _ in range(2)]
            assert served[0][1] == served[1][1] and served[0][0] == 200  # sticky per user
            version, response_id = served[0][1], served[0][2]
            # Arm 2 answers worse: 1 in 3 thumbs up against 5 in 6 for arm 1.
            good = i % 6 != 0 if version == "ab-bot@1" else i % 3 == 0
            body = {"response_id": response_id, "thumbs": "up" if good else "down"}
            if not good:
                body["correction"] = "应答应写明：七天无理由退货，运费由买家承担。"
            created = http.post("/feedback", json=body)
            assert created.status_code == 201, created.text
            assert created.json()["version_ref"] == version
            ratings[version] += 1
        missing = http.post("/feedback", json={"response_id": "chatcmpl-nope", "score": 1})
        assert missing.status_code == 404 and missing.json()["error"]["param"] == "response_id"
    assert min(ratings.values()) >= 15  # both arms got a fair share of the 60 users
    time.sleep(1)  # the served-response log is flushed every 0.5 s
    report = json.loads(gateway.cli("ab", "report", "ab-bot", "--json").stdout)
    assert {a["ref"]: a["stats"]["feedback"] for a in report["arms"]} == ratings
    assert {a["ref"]: a["stats"]["requests"] for a in report["arms"]} == {
        k: 2 * v for k, v in ratings.items()
    }
    assert report["mean_diff"] < 0 and report["p_value"] < 0.05 and report["significant"] is True
    text = gateway.cli("ab", "report", "ab-bot").stdout
    assert "two-proportion z-test" in text and "significant at 5%" in text
    lineage = json.loads(gateway.cli("lineage", "ab-bot@2", "--json").stdout)
    targets = {(e["target_kind"], e["relation"]) for e in lineage["downstream"]}
    assert ("deployment", "deployed") in targets and ("feedback", "feedback") in targets
    tree = gateway.cli("lineage", "ab-bot@2").stdout
    assert "deployment ab-bot" in tree and "feedback fb-" in tree
