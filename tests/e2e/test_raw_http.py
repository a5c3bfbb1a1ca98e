"""Malformed requests with raw httpx: always OpenAI-shaped JSON errors, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server

AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"{broken", 400),
        (b"[]", 400),
        (b'{"model": "tiny"}', 400),
        (b'{"model": "tiny", "messages": "hello"}', 400),
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 0}', 400),
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "top_p": 0}', 400),
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}', 400),
        ('{"model": "不存在", "messages": [{"role": "user", "content": "x"}]}'.encode(), 404),
        (b'{"model": "tiny@99999999999999999999", "messages": [{"role": "user", "content": "x"}]}', 404),
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "seed": 1e40}', 400),
        (
            b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "seed": 9' + b"9" * 25 + b"}",
            400,
        ),
    ],
)
def test_malformed_chat_requests(server: Server, body: bytes, status: int) -> None:
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        content=body,
        headers={**AUTH, "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]


def test_empty_prompt_batch_is_400(server: Server) -> None:
    response = httpx.post(
        f"{server.base_url}/completions", json={"model": "tiny", "prompt": []}, headers=AUTH, timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "prompt"


def test_auth_header_variants(server: Server) -> None:
    for headers in (
        {},
        {"authorization": "Basic abc"},
        {"authorization": "Bearer"},
        {"authorization": "Bearer x"},
    ):
        response = httpx.get(f"{server.base_url}/models", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"


def test_metrics_and_health_are_plain(server: Server) -> None:
    root = server.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/healthz", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{root}/readyz", timeout=10).json()["status"] == "ready"
    metrics = httpx.get(f"{root}/metrics", timeout=10)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "stratum_requests_total" in metrics.text


def test_key_never_in_logs(server: Server) -> None:
    httpx.get(f"{server.base_url}/models", headers=AUTH, timeout=10)
    logged = (server.home / "logs" / "stratum.log").read_text(encoding="utf-8")
    assert logged
    assert ADMIN_KEY not in logged
    assert ADMIN_KEY not in server.output()
