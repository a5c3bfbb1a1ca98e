"""``POST /v1/feedback`` on the gateway: attribution to the served version, tenant isolation, errors."""

from __future__ import annotations

from stratum.governance.schemas import OrgCreate, ProjectCreate
from tests.gateway.conftest import Gateway

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "退货政策是什么？"}]}


def test_feedback_on_a_response(gateway: Gateway) -> None:
    response = gateway.client.post("/v1/chat/completions", json=CHAT, headers=gateway.headers)
    assert response.status_code == 200
    response_id = response.json()["id"]
    body = {"response_id": response_id, "thumbs": "down", "correction": "七天无理由退货。", "extra": 1}
    created = gateway.client.post("/v1/feedback", json=body, headers=gateway.headers)
    assert created.status_code == 201, created.text
    feedback = created.json()
    assert feedback["version_ref"] == response.headers["x-stratum-model-version"] == "fake@1"
    assert feedback["score"] == 0.0 and feedback["correction"] == "七天无理由退货。"
    assert feedback["request_id"] == response.headers["x-request-id"]
    stored = gateway.state.feedback.list_feedback(model_ref="fake@1", max_score=0.5)
    assert [f.id for f in stored] == [feedback["id"]]


def test_streamed_responses_can_be_rated(gateway: Gateway) -> None:
    with gateway.client.stream(
        "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=gateway.headers
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    import json

    response_id = json.loads(lines[0][6:])["id"]
    created = gateway.client.post(
        "/v1/feedback", json={"response_id": response_id, "score": 0.75}, headers=gateway.headers
    )
    assert created.status_code == 201 and created.json()["score"] == 0.75


def test_feedback_errors(gateway: Gateway) -> None:
    post = gateway.client.post
    missing = post("/v1/feedback", json={"response_id": "chatcmpl-nope", "score": 1}, headers=gateway.headers)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "response_id"
    response_id = post("/v1/chat/completions", json=CHAT, headers=gateway.headers).json()["id"]
    bad = post("/v1/feedback", json={"response_id": response_id, "score": 7}, headers=gateway.headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "score"
    none = post("/v1/feedback", json={"response_id": response_id}, headers=gateway.headers)
    assert none.status_code == 400
    assert post("/v1/feedback", json={"response_id": response_id, "score": 1}).status_code == 401


def test_a_project_cannot_rate_another_projects_response(gateway: Gateway) -> None:
    state = gateway.state
    state.tenancy.create_org(OrgCreate(name="org-a"))
    for name in ("a1", "a2"):
        state.tenancy.create_project("org-a", ProjectCreate(name=name))
    key_a1, _ = state.keys.create_key(name="a1", role="developer", project="org-a/a1")
    key_a2, _ = state.keys.create_key(name="a2", role="developer", project="org-a/a2")
    response = gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key_a1}"}
    )
    response_id = response.json()["id"]
    other = gateway.client.post(
        "/v1/feedback",
        json={"response_id": response_id, "score": 0},
        headers={"authorization": f"Bearer {key_a2}"},
    )
    assert other.status_code == 404
    own = gateway.client.post(
        "/v1/feedback",
        json={"response_id": response_id, "score": 1},
        headers={"authorization": f"Bearer {key_a1}"},
    )
    assert own.status_code == 201 and own.json()["project_id"] == state.tenancy.get_project("org-a/a1").id


def test_the_response_record_keeps_the_masked_prompt_and_answer(gateway: Gateway) -> None:
    """What feedback datasets are built from: the messages after the guard's PII masking (the raw
    phone number is never stored) and the answer as the client saw it, streamed or not."""
    phone = "13912345678"
    messages = [
        {"role": "system", "content": "你是客服。"},
        {"role": "user", "content": f"我的电话{phone}，怎么退货？"},
    ]
    masked = [messages[0], {"role": "user", "content": "我的电话[PHONE]，怎么退货？"}]
    gateway.replies.extend(["请在订单页退货。", "七天内可以退。"])
    plain = gateway.client.post(
        "/v1/chat/completions", json={"model": "fake", "messages": messages}, headers=gateway.headers
    )
    assert plain.status_code == 200
    with gateway.client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "fake", "messages": messages, "stream": True},
        headers=gateway.headers,
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    import json

    streamed_id = json.loads(lines[0][6:])["id"]
    state = gateway.state
    for response_id, answer in ((plain.json()["id"], "请在订单页退货。"), (streamed_id, "七天内可以退。")):
        served = state.responses.lookup(response_id)
        assert served.prompt == masked and served.answer == answer
        created = gateway.client.post(
            "/v1/feedback", json={"response_id": response_id, "thumbs": "down"}, headers=gateway.headers
        )
        assert created.status_code == 201 and "prompt" not in created.json()  # not echoed back
    state.responses.flush()
    examples = state.feedback.examples(model_ref="fake")
    assert [(e.prompt, e.answer) for e in examples] == [
        (masked, "请在订单页退货。"),
        (masked, "七天内可以退。"),
    ]
    assert phone not in json.dumps([e.model_dump(mode="json") for e in examples], ensure_ascii=False)


def test_prompts_are_not_kept_when_switched_off(gateway: Gateway) -> None:
    gateway.state.settings.feedback_prompts = False
    response = gateway.client.post("/v1/chat/completions", json=CHAT, headers=gateway.headers)
    served = gateway.state.responses.lookup(response.json()["id"])
    assert served.prompt is None and served.answer is None
