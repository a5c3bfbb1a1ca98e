"""The per-request lookup memo, and that revocation still takes effect within a second."""

from __future__ import annotations

import time

from stratum.gateway.ttl import TTLCache
from tests.gateway.conftest import Gateway


def test_entries_expire_and_size_is_bounded() -> None:
    cache: TTLCache[str, str] = TTLCache(ttl=0.05, max_entries=2)
    cache.put("模型", "a")
    assert cache.get("模型") == "a"
    cache.put("b", "b")
    cache.put("c", "c")
    assert cache.get("模型") is None  # evicted: oldest beyond max_entries
    time.sleep(0.06)
    assert cache.get("b") is None


def test_revoked_key_stops_working_within_a_second(gateway: Gateway) -> None:
    key, public = gateway.state.keys.create_key(name="临时")
    headers = {"authorization": f"Bearer {key}"}
    assert gateway.client.get("/v1/models", headers=headers).status_code == 200
    gateway.state.keys.revoke(public.id)
    deadline = time.monotonic() + 2.0
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = gateway.client.get("/v1/models", headers=headers).status_code
        time.sleep(0.1)
    assert status == 401
