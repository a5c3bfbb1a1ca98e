"""/v1/models, /v1/embeddings, health, readiness and metrics."""

from __future__ import annotations

import base64

import numpy as np

from tests.gateway.conftest import Gateway


def test_models_list_and_get(gateway: Gateway) -> None:
    body = gateway.client.get("/v1/models", headers=gateway.headers).json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} == {"fake", "fake-embed"}
    one = gateway.client.get("/v1/models/fake@1", headers=gateway.headers)
    assert one.status_code == 200 and one.json()["id"] == "fake@1" and one.json()["version"] == "fake@1"
    assert gateway.client.get("/v1/models/absent", headers=gateway.headers).status_code == 404


def test_new_model_served_without_restart(gateway: Gateway) -> None:
    gateway.add_model("model-two")
    response = gateway.client.post(
        "/v1/chat/completions",
        json={"model": "model-two", "messages": [{"role": "user", "content": "在吗"}]},
        headers=gateway.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "在吗"


def test_embeddings_float_and_base64_batch(gateway: Gateway) -> None:
    texts = ["今天天气很好", "The weather is nice today"]
    floats = gateway.client.post(
        "/v1/embeddings", json={"model": "fake-embed", "input": texts}, headers=gateway.headers
    ).json()
    assert [d["index"] for d in floats["data"]] == [0, 1]
    assert len(floats["data"][0]["embedding"]) == 8
    assert floats["usage"] == {"prompt_tokens": 6 + 25, "completion_tokens": 0, "total_tokens": 31}
    b64 = gateway.client.post(
        "/v1/embeddings",
        json={"model": "fake-embed", "input": texts, "encoding_format": "base64"},
        headers=gateway.headers,
    ).json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][1]["embedding"]), dtype=np.float32)
    assert np.allclose(decoded, floats["data"][1]["embedding"])


def test_embeddings_client_errors(gateway: Gateway) -> None:
    for payload in (
        {"model": "fake-embed", "input": []},
        {"model": "fake-embed", "input": [[1, 2, 3]]},
        {"model": "fake-embed", "input": "x", "dimensions": 4},
        {"model": "fake", "input": "x"},
        {"model": "fake-embed", "input": "x", "encoding_format": "int8"},
    ):
        response = gateway.client.post("/v1/embeddings", json=payload, headers=gateway.headers)
        assert response.status_code == 400, payload
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_health_ready_metrics(gateway: Gateway) -> None:
    assert gateway.client.get("/healthz").json() == {"status": "ok"}
    ready = gateway.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["store"] is True
    gateway.client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": [{"role": "user", "content": "指标"}]},
        headers=gateway.headers,
    )
    gateway.client.post(
        "/v1/chat/completions", json={"model": "nope", "messages": []}, headers=gateway.headers
    )
    text = gateway.client.get("/metrics").text
    assert 'stratum_requests_total{endpoint="chat",model="fake",status="200"} 1.0' in text
    assert 'stratum_tokens_total{direction="out",model="fake"} 2.0' in text
    assert "stratum_time_to_first_token_seconds_bucket" in text
    assert "stratum_request_duration_seconds_bucket" in text
