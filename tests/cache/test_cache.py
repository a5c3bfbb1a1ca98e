"""The response cache: keys, LRU + TTL store, Redis store, semantic hits scoped per tenant/version."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from stratum.cache import (
    CachedChoice,
    CachedResponse,
    LocalStore,
    RedisStore,
    ResponseCache,
    cache_key,
    is_deterministic,
    normalise_request,
)
from tests.conftest import redis_test_url


def _response(text: str) -> CachedResponse:
    return CachedResponse(
        version="m@1",
        choices=[CachedChoice(index=0, text=text, finish_reason="stop")],
        prompt_tokens=4,
        completion_tokens=2,
    )


def _request(text: str, **params: object) -> dict[str, object]:
    return normalise_request([{"role": "user", "content": text}], {"temperature": 0, **params})


def test_only_deterministic_requests_are_cacheable() -> None:
    assert is_deterministic(temperature=0, seed=None)
    assert is_deterministic(temperature=0.8, seed=7)
    assert not is_deterministic(temperature=None, seed=None)
    assert not is_deterministic(temperature=0.2, seed=None)


def test_keys_normalise_text_and_include_what_changes_the_answer() -> None:
    def key(request: dict[str, object], version: str = "m@1", scope: str = "p1") -> str:
        return cache_key(scope=scope, version=version, request=request)

    base = key(_request("你好，世界"))
    assert key(_request("  你好，世界\n")) == base
    # NFC: a decomposed é equals the composed one.
    assert key(_request("caf\u0065\u0301")) == key(_request("caf\u00e9"))
    assert key(_request("你好，世界", user="someone", stream=True)) == base  # not output-changing
    assert key(_request("你好，世界", max_tokens=5)) != base
    assert key(_request("你好，世界", stop="。")) == key(_request("你好，世界", stop=["。"]))
    assert key(_request("你好，世界"), version="m@2") != base
    assert key(_request("你好，世界"), scope="p2") != base


def test_local_store_is_an_lru_with_ttl() -> None:
    now = [0.0]
    store = LocalStore(2, clock=lambda: now[0])
    store.set("a", b"1", ttl_s=10)
    store.set("b", b"2", ttl_s=10)
    assert store.get("a") == b"1"  # a is now the most recent
    store.set("c", b"3", ttl_s=10)
    assert store.get("b") is None and store.get("a") == b"1"
    now[0] = 10.0
    assert store.get("a") is None
    store.set("x|m|1", b"", ttl_s=5)
    store.set("x|n|1", b"", ttl_s=5)
    assert store.drop(contains="|m|") == 1 and len(store) == 1


def test_exact_hits_and_invalidation_by_model() -> None:
    cache = ResponseCache(LocalStore(100), ttl_s=60)
    request = _request("退款怎么办")
    assert cache.lookup(scope="p1", model="bot", version="m@1", request=request) is None
    cache.put(scope="p1", model="bot", version="m@1", request=request, response=_response("请在订单页申请"))
    hit = cache.lookup(scope="p1", model="bot", version="m@1", request=request)
    assert hit is not None and hit.choices[0].text == "请在订单页申请" and hit.hit == "exact"
    assert cache.lookup(scope="p2", model="bot", version="m@1", request=request) is None
    assert cache.invalidate("other") == 0
    assert cache.invalidate("bot") == 1
    assert cache.lookup(scope="p1", model="bot", version="m@1", request=request) is None


def _encoder() -> tuple[dict[str, np.ndarray], object]:
    vectors = {
        "如何申请退款": np.array([1.0, 0.0, 0.0]),
        "怎么申请退款？": np.array([0.98, 0.2, 0.0]),
        "营业时间": np.array([0.0, 1.0, 0.0]),
    }
    return vectors, lambda text: vectors[text]


def test_semantic_hits_need_similarity_and_the_same_tenant_version_and_context() -> None:
    _, encode = _encoder()
    cache = ResponseCache(LocalStore(100), ttl_s=60, semantic_threshold=0.95, encode=encode)  # type: ignore[arg-type]
    cache.put(
        scope="p1", model="bot", version="m@1", request=_request("如何申请退款"), response=_response("订单页")
    )
    similar = _request("怎么申请退款？")
    hit = cache.lookup(scope="p1", model="bot", version="m@1", request=similar)
    assert hit is not None and hit.hit == "semantic" and hit.choices[0].text == "订单页"
    assert cache.lookup(scope="p1", model="bot", version="m@1", request=_request("营业时间")) is None
    assert (
        cache.lookup(scope="p2", model="bot", version="m@1", request=similar) is None
    )  # never across tenants
    assert cache.lookup(scope="p1", model="bot", version="m@2", request=similar) is None
    assert (
        cache.lookup(scope="p1", model="bot", version="m@1", request=_request("怎么申请退款？", max_tokens=3))
        is None
    )
    cache.invalidate("bot")
    assert cache.lookup(scope="p1", model="bot", version="m@1", request=similar) is None


@pytest.mark.redis
def test_redis_store_round_trip_ttl_and_drop() -> None:
    store = RedisStore(redis_test_url())
    prefix = uuid.uuid4().hex
    try:
        store.set(f"{prefix}|bot|1", b"cached", ttl_s=30)
        store.set(f"{prefix}|other|1", b"x", ttl_s=30)
        assert store.get(f"{prefix}|bot|1") == b"cached"
        assert store.drop(contains=f"{prefix}|bot|") == 1
        assert store.get(f"{prefix}|bot|1") is None and store.get(f"{prefix}|other|1") == b"x"
    finally:
        store.drop(contains=prefix)
        store.close()
