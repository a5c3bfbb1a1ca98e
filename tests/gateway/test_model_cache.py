"""The model pool as a cache: memory budget, LRU weighted by use, busy and pinned entries stay,
adapters share their base's engine, metrics. Fake engines with a declared size, real registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.fake import FakeEngine
from stratum.errors import Conflict, ModelNotFound, Overloaded
from stratum.gateway.metrics import Metrics
from stratum.gateway.model_cache import HIT_WEIGHT_S
from stratum.gateway.pool import AdapterEngine, ModelPool
from stratum.registry import ModelVersionPublic, RegistryService
from stratum.storage import Database

MB = 1 << 20


class SizedEngine(FakeEngine):
    """A fake engine that takes ``memory_bytes`` and can hold LoRA adapters (of 1 MB each)."""

    def __init__(self, version: ModelVersionPublic, nbytes: int) -> None:
        super().__init__()
        self.version = version
        self.memory_bytes = nbytes
        self.closed = False
        self.adapters: set[str] = set()
        self.busy_adapters: set[str] = set()

    async def close(self) -> None:
        self.closed = True

    async def load_adapter(self, name: str, path: Path) -> int:
        self.adapters.add(name)
        return MB

    async def unload_adapter(self, name: str) -> None:
        self.adapters.discard(name)

    def adapter_in_use(self, name: str) -> bool:
        return name in self.busy_adapters


@pytest.fixture
def registry(db: Database, tmp_path: Path) -> RegistryService:
    registry = RegistryService(db)
    for name in ("a", "b", "c"):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "config.json").write_text("{}")
        # The cache estimates a model's memory from its files before loading it: 10 MB of weights.
        with (directory / "model.safetensors").open("wb") as weights:
            weights.truncate(10 * MB)
        registry.add_model(name=name, source="local", path=directory)
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    with (adapter / "adapter_model.safetensors").open("wb") as weights:
        weights.truncate(MB - 100)  # with adapter_config.json, about the 1 MB SizedEngine reports
    registry.add_model(name="bot", source="local", variant="adapter", base="a@1", path=adapter)
    registry.add_model(name="bot2", source="local", variant="adapter", base="a@1", path=adapter)
    return registry


def _pool(
    registry: RegistryService, budget: int | None, **kwargs: Any
) -> tuple[ModelPool, list[SizedEngine]]:
    built: list[SizedEngine] = []

    def factory(version: ModelVersionPublic) -> SizedEngine:
        built.append(SizedEngine(version, 10 * MB))
        return built[-1]

    return ModelPool(registry, factory, cache_bytes=budget, metrics=Metrics(), **kwargs), built


def _metric(pool: ModelPool, name: str, **labels: str) -> float:
    assert pool.metrics is not None
    value = pool.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_lru_eviction_with_hits_and_metrics(registry: RegistryService) -> None:
    pool, built = _pool(registry, 25 * MB)
    await pool.text_engine("a")
    await pool.text_engine("b")
    await pool.text_engine("a")  # a hit: "a" is now both more recent and more popular
    await pool.text_engine("c")  # 30 MB > 25 MB: the least valuable idle one ("b") goes
    assert sorted(v.ref for v, _ in pool.loaded()) == ["a@1", "c@1"]
    assert [e.version.ref for e in built if e.closed] == ["b@1"]
    assert _metric(pool, "stratum_model_cache_hits_total", model="a", kind="model") == 1
    assert _metric(pool, "stratum_model_cache_loads_total", model="b", kind="model") == 1
    assert _metric(pool, "stratum_model_cache_evictions_total", model="b", kind="model") == 1
    assert _metric(pool, "stratum_model_cache_bytes") == 20 * MB


async def test_popularity_outweighs_a_little_recency(registry: RegistryService) -> None:
    pool, _ = _pool(registry, 25 * MB)
    for _ in range(15):
        await pool.text_engine("a")  # 15 uses: log2(16) = 4 doublings, worth 4 minutes
    await pool.text_engine("b")  # used once, later
    entries = pool._cache.entries
    for entry in entries.values():  # "a" last used 2 minutes before "b" (1 use: 1 doubling)
        entry.last_used = 1000.0 if entry.version.name == "a" else 1000.0 + 2 * HIT_WEIGHT_S
    await pool.text_engine("c")
    assert sorted(v.name for v, _ in pool.loaded()) == ["a", "c"]


async def test_busy_and_pinned_models_are_never_evicted(registry: RegistryService) -> None:
    pool, built = _pool(registry, 25 * MB, pinned=["a"])
    await pool.text_engine("a")
    _, b = await pool.text_engine("b")
    stream = b.generate(GenerationRequest("r", SamplingParams(), prompt="长长的回答"))
    assert isinstance(b, SizedEngine) and b.running == 1  # a request in flight on "b"
    with pytest.raises(Overloaded, match="busy or pinned") as full:
        await pool.text_engine("c")
    assert full.value.retry_after >= 1
    assert not any(e.closed for e in built)
    async for _ in stream:  # the request ends: "b" may go now
        pass
    await pool.text_engine("c")
    assert sorted(v.name for v, _ in pool.loaded()) == ["a", "c"]


async def test_adapters_share_the_base_engine(registry: RegistryService) -> None:
    pool, built = _pool(registry, None)
    _, base = await pool.text_engine("a")
    version, bot = await pool.text_engine("bot")
    _, bot2 = await pool.text_engine("bot2")
    assert version.variant == "adapter"
    assert isinstance(bot, AdapterEngine) and isinstance(bot2, AdapterEngine)
    assert bot.base is base and bot2.base is base and len(built) == 1  # one copy of the weights
    assert isinstance(base, SizedEngine) and len(base.adapters) == 2
    chunks = [c async for c in bot.generate(GenerationRequest("r", SamplingParams(), prompt="你好"))]
    assert "".join(c.text for c in chunks) == "你好"
    assert base.requests[-1].adapter == bot.adapter  # the request carries the adapter to the engine
    assert sorted(v.ref for v in pool.loaded_adapters()) == ["bot2@1", "bot@1"]
    assert _metric(pool, "stratum_model_cache_loads_total", model="bot", kind="adapter") == 1


async def test_evicting_a_base_takes_its_adapters(registry: RegistryService) -> None:
    pool, built = _pool(registry, 22 * MB)
    await pool.text_engine("bot")  # loads base "a" (10 MB) + adapter (1 MB)
    await pool.text_engine("b")
    # Loading "c" must free 10 MB: base "a" (with its adapter) is the least recently used.
    await pool.text_engine("c")
    assert sorted(v.name for v, _ in pool.loaded()) == ["b", "c"]
    assert pool.loaded_adapters() == []
    await pool.text_engine("bot")  # comes back on demand, on a fresh base engine
    assert len(built) == 4


async def test_busy_adapter_stays_idle_one_goes(registry: RegistryService) -> None:
    pool, _ = _pool(registry, 11 * MB + MB // 2)
    _, bot = await pool.text_engine("bot")
    assert isinstance(bot, AdapterEngine)
    bot.base.busy_adapters.add(bot.adapter)
    with pytest.raises(Overloaded):
        await pool.text_engine("bot2")  # base + two adapters do not fit in 11.5 MB
    bot.base.busy_adapters.clear()
    await pool.text_engine("bot2")
    assert [v.name for v in pool.loaded_adapters()] == ["bot2"]


async def test_removed_adapter_is_unloaded_and_base_files_checked(
    registry: RegistryService, tmp_path: Path
) -> None:
    pool, built = _pool(registry, None)
    await pool.text_engine("bot")
    registry.remove_model("bot")
    await pool.unload_missing()
    assert [v.name for v in pool.loaded_adapters()] == []
    assert built[0].adapters == set()
    # The base files change on disk: adapters are refused on them (the base itself still serves).
    (tmp_path / "a" / "config.json").write_text('{"changed": true}')
    fresh, _ = _pool(registry, None)
    with pytest.raises(Conflict, match="changed since it was registered"):
        await fresh.text_engine("bot2")


async def test_preload_pinned_from_setting_and_metadata(registry: RegistryService, tmp_path: Path) -> None:
    registry.add_model(name="c", source="local", path=tmp_path / "c", metadata={"pinned": True})
    pool, _ = _pool(registry, None, pinned=["bot"])
    assert await pool.preload_pinned() == ["bot", "c@2"]
    assert sorted(v.ref for v, _ in pool.loaded()) == ["a@1", "c@2"]
    assert [v.ref for v in pool.loaded_adapters()] == ["bot@1"]


async def test_a_bad_pin_in_metadata_is_skipped_a_bad_setting_fails(
    registry: RegistryService, tmp_path: Path
) -> None:
    registry.add_model(name="c", source="local", path=tmp_path / "c", metadata={"pinned": True})
    (tmp_path / "a" / "config.json").write_text('{"changed": true}')  # adapters on "a" are refused
    registry.add_model(
        name="bot3",
        source="local",
        variant="adapter",
        base="a@1",
        path=tmp_path / "lora",
        metadata={"pinned": True},
    )
    pool, _ = _pool(registry, None)
    assert await pool.preload_pinned() == ["c@2"]
    with pytest.raises(ModelNotFound):
        await _pool(registry, None, pinned=["missing"])[0].preload_pinned()
