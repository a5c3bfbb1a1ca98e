"""A registry version as an engine (``registry.engines``): what the gateway pool and evals share."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.local import LocalEngine
from stratum.errors import Conflict, InvalidRequest
from stratum.registry import RegistryService
from stratum.registry.engines import AdapterEngine, build_engine, serve_version
from stratum.settings import Settings
from stratum.storage import Database
from tests.tiny import build_tiny_llama, build_tiny_lora, reference_greedy

MESSAGES = [{"role": "user", "content": "你好，请介绍一下退货流程。"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    base = build_tiny_llama(root / "base")
    return base, build_tiny_lora(base, root / "lora", seed=3)


async def _greedy(engine: object) -> str:
    request = GenerationRequest("r1", SamplingParams(max_tokens=8, temperature=0.0), messages=MESSAGES)
    return "".join([chunk.text async for chunk in engine.generate(request)])  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_serve_version_runs_an_adapter_on_its_base_and_checks_the_base_files(
    db: Database, tmp_path: Path, tiny: tuple[Path, Path]
) -> None:
    base_dir, lora_dir = tiny
    base_copy = Path(shutil.copytree(base_dir, tmp_path / "base"))
    registry = RegistryService(db)
    registry.add_model(name="base-zh", source="local", path=base_copy)
    adapter = registry.add_model(
        name="kefu", description="客服", source="local", variant="adapter", base="base-zh@1", path=lora_dir
    )
    settings = Settings(home=tmp_path)
    async with serve_version(registry, adapter, settings) as engine:
        assert isinstance(engine, AdapterEngine) and isinstance(engine.base, LocalEngine)
        text = await _greedy(engine)
    assert text == reference_greedy(base_copy, lora_dir, MESSAGES, max_tokens=8)
    async with serve_version(registry, registry.resolve("base-zh"), settings) as plain:
        assert await _greedy(plain) == reference_greedy(base_copy, None, MESSAGES, max_tokens=8)

    # The base's files change on disk after registration: an eval refuses the adapter, like the pool.
    config = base_copy / "config.json"
    config.write_text(config.read_text() + "\n")
    with pytest.raises(Conflict, match="changed since it was registered") as refused:
        async with serve_version(registry, adapter, settings):
            pytest.fail("an adapter on changed base files must not be served")
    assert refused.value.code == "adapter_base_mismatch"


def test_build_engine_refuses_cold_onnx_and_missing_artifacts(db: Database, tmp_path: Path) -> None:
    registry = RegistryService(db)
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    version = registry.add_model(name="model-zh", description="中文模型", source="local", path=directory)
    cold = version.model_copy(update={"artifact_uri": "s3://bucket/模型/1"})
    with pytest.raises(InvalidRequest, match="stratum models move") as refused:
        build_engine(cold, Settings(home=tmp_path))
    assert refused.value.code == "model_in_cold_tier"
    (directory / "model.onnx").write_bytes(b"onnx graph")  # an ONNX export: no PyTorch weights
    with pytest.raises(InvalidRequest, match="ONNX export") as onnx:
        build_engine(version, Settings(home=tmp_path))
    assert onnx.value.code == "unsupported_model_format"
    with pytest.raises(InvalidRequest, match="no artifact"):
        build_engine(version.model_copy(update={"artifact_uri": None}), Settings(home=tmp_path))


async def test_serve_version_refuses_an_embedding_model(db: Database, tmp_path: Path) -> None:
    registry = RegistryService(db)
    directory = tmp_path / "e5"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    version = registry.add_model(name="e5", source="local", kind="embedding", path=directory)
    with pytest.raises(InvalidRequest, match="embedding model"):
        async with serve_version(registry, version, Settings(home=tmp_path)):
            pytest.fail("an embedding model has no text engine")
