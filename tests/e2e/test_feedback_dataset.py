"""Feedback backflow as a user meets it: the openai SDK chats with the gateway, feedback goes in
through ``POST /v1/feedback``, and ``stratum data from-feedback`` (a subprocess) builds a dataset
version from it — with the prompt the gateway kept, no ``--prompts`` file."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import ADMIN_KEY, Server

pytestmark = pytest.mark.slow


def test_chat_feedback_from_feedback_dataset(server: Server) -> None:
    client = OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0)
    asked = ["怎么申请退款？", "发票怎么开？"]
    ids, answers = [], []
    for question in asked:
        reply = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "system", "content": "你是客服。"}, {"role": "user", "content": question}],
            max_tokens=4,
            temperature=0,
        )
        ids.append(reply.id)
        answers.append(reply.choices[0].message.content)
    with httpx.Client(base_url=server.base_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as http:
        corrected = http.post(
            "/feedback",
            json={"response_id": ids[0], "thumbs": "down", "correction": "请在订单页点击“申请退款”。"},
        )
        assert corrected.status_code == 201, corrected.text
        bare = http.post("/feedback", json={"response_id": ids[1], "thumbs": "down"})
        assert bare.status_code == 201, bare.text

    made = server.cli(
        "data", "from-feedback", "--name", "客服反馈", "--model", "tiny", "--since", "1d", "--json"
    )
    result = json.loads(made.stdout)
    assert result["corrections"] == 1 and result["review"] == 1 and result["missing_prompt"] == 0
    ref = result["version"]["ref"]
    assert ref == "客服反馈@1" and result["version"]["transform"]["name"] == "from_feedback"

    shown = server.cli("data", "show", ref, "--json")
    assert json.loads(shown.stdout)["row_count"] == 2
    exported = server.home / "反馈.jsonl"
    server.cli("data", "export", ref, str(exported))
    rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    by_label = {row["label"]: row for row in rows}
    assert by_label["correction"]["messages"] == [
        {"role": "system", "content": "你是客服。"},
        {"role": "user", "content": "怎么申请退款？"},
        {"role": "assistant", "content": "请在订单页点击“申请退款”。"},
    ]
    # The bare thumbs-down carries the answer that was judged bad, queued for a person to correct.
    queued = by_label["needs_correction"]["messages"]
    assert queued[1] == {"role": "user", "content": "发票怎么开？"} and queued[-1]["role"] == "assistant"
    assert queued[-1]["content"] == answers[1]
    # A person writes the right answer in the review queue; the decision makes the next version.
    index = rows.index(by_label["needs_correction"])
    fixed = {"messages": [*queued[:-1], {"role": "assistant", "content": "在“我的订单”里申请开票。"}]}
    decisions = server.home / "决定.jsonl"
    decisions.write_text(
        json.dumps({"row_index": index, "decision": "edit", "row": fixed}, ensure_ascii=False),
        encoding="utf-8",
    )
    server.cli("data", "review", ref, "--decisions", str(decisions))
    final = json.loads(server.cli("data", "show", "客服反馈@2", "--json").stdout)
    assert final["row_count"] == 2 and final["parent"] == ref
