"""``stratum eval judge`` and ``stratum eval schedule`` in a subprocess next to a running server.

A mock OpenAI-compatible upstream plays three models: ``good`` (answers from a reference table),
``weak`` (always 不知道) and ``judge``, a referee that reads the judge prompt and picks the answer
that contains the reference (T when both or neither do), so the position-swapped verdicts are
consistent and the expected scores are known. The schedule test goes the way production does:
users chat with ``bot:prod`` through the gateway, the alias moves to a worse version, users give
thumbs-down with corrections, and the scheduled run flags the drop and builds a backflow dataset.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stratum.evals.tables import EvalScheduleRow
from stratum.storage import Database, utcnow
from tests.e2e.conftest import ADMIN_KEY, Server, free_port

ANSWERS = {
    "如何申请退货？": "七天内在订单页申请退货",
    "发票什么时候开？": "确认收货后自动开具发票",
    "运费谁承担？": "质量问题由商家承担运费",
    "客服几点上班？": "每天九点到二十一点",
}
_ANSWER_A = re.compile(r"回答 A:\n(.*?)\n\n回答 B:", re.S)
_ANSWER_B = re.compile(r"回答 B:\n(.*?)\n\n只输出", re.S)
_QUESTION = re.compile(r"问题 Question:\n(.*?)\n\n回答 A:", re.S)


class MockUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        prompt = str(body["messages"][-1]["content"])
        if body["model"] == "judge":
            text = _verdict(prompt)
        elif body["model"] == "good":
            text = ANSWERS.get(prompt.strip(), "请联系客服")
        else:
            text = "不知道"
        if body.get("stream"):
            return StreamingResponse(_events(body["model"], text), media_type="text/event-stream")
        message = {"role": "assistant", "content": text}
        return JSONResponse(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        )


async def _events(model: str, text: str) -> AsyncIterator[str]:
    for delta, finish in ((text, None), ("", "stop")):
        chunk = {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": delta} if delta else {}, "finish_reason": finish}],
        }
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def _verdict(prompt: str) -> str:
    question, first, second = (pattern.search(prompt) for pattern in (_QUESTION, _ANSWER_A, _ANSWER_B))
    if question is None or first is None or second is None:
        return "无法判断"
    reference = ANSWERS.get(question.group(1).strip(), "")
    a_ok, b_ok = reference in first.group(1), reference in second.group(1)
    return "A" if a_ok and not b_ok else "B" if b_ok and not a_ok else "T"


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, MockUpstream]]:
    mock = MockUpstream()
    port = free_port()
    config = uvicorn.Config(
        mock.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none", http="h11"
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not runner.started:
        assert time.monotonic() < deadline and thread.is_alive(), "mock upstream did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/v1", mock
    runner.should_exit = True
    thread.join(timeout=10)


def _add(server: Server, name: str, url: str, upstream_model: str) -> None:
    server.cli(
        "models",
        "add",
        name,
        "--upstream",
        url,
        "--upstream-model",
        upstream_model,
        "--api-key-env",
        "E2E_UPSTREAM_KEY",
    )


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "售后问答.jsonl"
    rows = [{"id": f"q{i}", "prompt": q, "answer": a} for i, (q, a) in enumerate(ANSWERS.items())]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_judge_prefers_the_better_version_in_both_orders(
    server: Server, upstream: tuple[str, MockUpstream], tmp_path: Path
) -> None:
    url, mock = upstream
    _add(server, "judged-bot", url, "good")
    _add(server, "judged-bot", url, "weak")
    _add(server, "referee", url, "judge")
    suite = _suite(tmp_path)
    better = server.cli(
        "eval",
        "judge",
        "judged-bot@1",
        "--baseline",
        "judged-bot@2",
        "--judge",
        "referee",
        "--suite",
        str(suite),
        "--json",
    )
    won = json.loads(better.stdout)
    assert won["model_ref"] == "judged-bot@1" and won["items"] == 4
    assert won["metrics"]["judge"] == 1.0 and won["metrics"]["win"] == 1.0
    assert won["suite"] == f"judge[judged-bot@2 by referee@1]:{suite.stem}"
    judge_asks = [r for r in mock.requests if r["model"] == "judge"]
    assert len(judge_asks) == 8  # 4 items x 2 orders
    assert {q for q in ANSWERS if any(q in str(r["messages"]) for r in judge_asks)} == set(ANSWERS)
    worse = server.cli(
        "eval",
        "judge",
        "judged-bot@2",
        "--baseline",
        "judged-bot@1",
        "--judge",
        "referee",
        "--suite",
        str(suite),
        "--json",
    )
    lost = json.loads(worse.stdout)
    assert lost["metrics"]["judge"] == 0.0
    compared = server.cli("eval", "compare", str(lost["id"]), str(won["id"]), "--metric", "judge", "--json")
    comparison = json.loads(compared.stdout)
    assert (
        comparison["baseline_mean"] == 0.0
        and comparison["candidate_mean"] == 1.0
        and comparison["items"] == 4
    )
    listed = json.loads(server.cli("eval", "list", "--model", "judged-bot@1", "--json").stdout)
    assert [r["id"] for r in listed] == [won["id"]]
    # The referee is an ordinary served model: the running gateway answers with it too.
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="referee", messages=[{"role": "user", "content": "你好"}]
        )
    assert reply.choices[0].message.content == "无法判断"
    missing = server.cli(
        "eval",
        "judge",
        "judged-bot@1",
        "--baseline",
        "judged-bot@2",
        "--judge",
        "无此评审",
        "--suite",
        str(suite),
        check=False,
    )
    assert (
        missing.returncode == 1 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr
    )


def _chat(client: openai.OpenAI, question: str) -> tuple[str, str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="bot:prod", messages=[{"role": "user", "content": question}], temperature=0
    )
    reply = raw.parse()
    return reply.id, raw.headers["x-stratum-model-version"], str(reply.choices[0].message.content)


def _feedback(server: Server, response_id: str, correction: str) -> dict[str, Any]:
    url = server.base_url + "/feedback"
    body = {"response_id": response_id, "thumbs": "down", "correction": correction}
    for _ in range(50):  # the response record reaches the store in batches
        sent = httpx.post(url, json=body, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
        if sent.status_code != 404:
            break
        time.sleep(0.1)
    assert sent.status_code == 201, sent.text
    return dict(sent.json())


def _make_due(server: Server, schedule_id: int) -> None:
    """Rather than wait for --every, make the schedule due now (what the clock would do)."""
    db = Database(f"sqlite:///{server.home / 'stratum.db'}")
    try:
        with db.session() as session:
            row = session.get(EvalScheduleRow, schedule_id)
            assert row is not None
            row.next_due_at = utcnow() - timedelta(seconds=1)
    finally:
        db.dispose()


@pytest.mark.slow
def test_schedule_flags_the_drop_of_prod_and_builds_backflow_from_served_feedback(
    server: Server, upstream: tuple[str, MockUpstream], tmp_path: Path
) -> None:
    url, _ = upstream
    _add(server, "bot", url, "good")
    _add(server, "bot", url, "weak")
    server.cli("models", "alias", "bot", "prod", "1")
    suite = _suite(tmp_path)
    made = json.loads(
        server.cli(
            "eval",
            "schedule",
            "add",
            "bot:prod",
            "--suite",
            str(suite),
            "--every",
            "1h",
            "--metric",
            "exact_match",
            "--json",
        ).stdout
    )
    first = server.cli("eval", "schedule", "run-due", "--json")
    [outcome] = json.loads(first.stdout)
    assert outcome["run"]["model_ref"] == "bot@1" and outcome["current"] == 1.0 and not outcome["flagged"]
    assert json.loads(server.cli("eval", "schedule", "run-due", "--json").stdout) == []  # not due yet

    # Production moves to version 2, which answers worse; users say so with corrections.
    server.cli("models", "alias", "bot", "prod", "2")
    prompts, corrected = tmp_path / "prompts.jsonl", []
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        for question in list(ANSWERS)[:3]:
            for _ in range(30):  # the gateway sees the alias move within its cache TTL
                response_id, version, answer = _chat(client, question)
                if version == "bot@2":
                    break
                time.sleep(0.2)
            assert version == "bot@2" and answer == "不知道"
            feedback = _feedback(server, response_id, ANSWERS[question])
            assert feedback["version_ref"] == "bot@2" and feedback["score"] == 0.0
            corrected.append({"response_id": response_id, "prompt": question})
    prompts.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in corrected) + "\n", encoding="utf-8"
    )

    _make_due(server, made["id"])
    second = server.cli("eval", "schedule", "run-due", "--prompts", str(prompts), "--json", check=False)
    assert second.returncode == 1, second.stderr  # cron alerts on exit 1
    [flagged] = json.loads(second.stdout)
    assert flagged["run"]["model_ref"] == "bot@2" and flagged["current"] == 0.0 and flagged["flagged"]
    assert (flagged["backflow_rows"], flagged["missing_prompt"]) == (3, 0)
    [schedule] = json.loads(server.cli("eval", "schedule", "list", "--json").stdout)
    assert schedule["flagged"] is True and "bot@2" in schedule["flag_reason"]
    assert schedule["backflow_dataset"] == "bot-backflow@1"
    exported = tmp_path / "backflow.jsonl"
    written = json.loads(server.cli("data", "export", "bot-backflow@1", str(exported), "--json").stdout)
    assert written["rows"] == 3
    rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in rows}
    assert pairs == {q: ANSWERS[q] for q in list(ANSWERS)[:3]}
