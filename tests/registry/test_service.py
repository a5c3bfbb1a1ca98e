"""RegistryService on both backends: add, resolve, aliases and their history, removal."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from stratum.errors import Conflict, InvalidRequest, ModelNotFound
from stratum.registry import ModelVersionPublic, RegistryService, parse_ref
from stratum.registry.checksum import directory_checksum
from stratum.storage import Database, utcnow


@pytest.fixture
def registry(db: Database) -> RegistryService:
    return RegistryService(db)


def add_upstream(registry: RegistryService, name: str = "gpt", **extra: Any) -> ModelVersionPublic:
    return registry.add_model(
        name=name, source="upstream", upstream_url="https://api.example.com/v1", **extra
    )


def pause() -> None:
    # Timestamps have microsecond resolution; keep events strictly ordered in time.
    time.sleep(0.005)


def test_add_local_model_reads_its_files(registry: RegistryService, model_dir: Path) -> None:
    version = registry.add_model(
        name="tiny",
        source="local",
        path=model_dir,
        description="一个用于测试的中文小模型",
        metadata={"语言": "中文", "licence": "mit"},
        actor="张三",
    )
    assert version.ref == "tiny@1"
    assert version.version == 1 and version.variant == "full" and version.kind == "chat"
    assert version.checksum == directory_checksum(model_dir)
    assert version.artifact_uri == str(model_dir.resolve())
    assert version.metadata["architecture"] == "LlamaForCausalLM"
    assert version.metadata["parameters"] == 44
    assert version.metadata["context_length"] == 256
    assert version.metadata["语言"] == "中文"
    assert version.metadata["licence"] == "mit"  # the caller's metadata wins over detected values
    assert version.created_by == "张三"
    assert version.created_at.tzinfo is not None
    assert version.aliases == ["latest"]
    model = registry.get_model("tiny")
    assert model.description == "一个用于测试的中文小模型"
    assert model.versions == [version]
    assert json.loads(version.model_dump_json())["ref"] == "tiny@1"


def test_adding_again_appends_a_version(registry: RegistryService, model_dir: Path) -> None:
    registry.add_model(name="tiny", source="local", path=model_dir)
    second = registry.add_model(name="tiny", source="demo", path=model_dir)
    assert second.ref == "tiny@2"
    assert registry.resolve("tiny").version == 2
    assert registry.get_model("tiny").aliases == {"latest": 2}


def test_kind_must_match_the_existing_model(registry: RegistryService) -> None:
    add_upstream(registry, "gpt")
    with pytest.raises(Conflict, match="chat model"):
        add_upstream(registry, "gpt", kind="embedding")


def test_local_model_needs_config_json(registry: RegistryService, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequest, match=r"config\.json") as error:
        registry.add_model(name="x", source="local", path=tmp_path / "empty")
    assert error.value.param == "path"
    with pytest.raises(InvalidRequest, match="not a directory"):
        registry.add_model(name="x", source="local", path=tmp_path / "missing")
    with pytest.raises(InvalidRequest, match="path"):
        registry.add_model(name="x", source="local")


@pytest.mark.parametrize("name", ["a@b", "a:b", "-lead", "with space", "中文名", "", "x" * 129, "ok\n"])
def test_invalid_names(registry: RegistryService, name: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        add_upstream(registry, name)
    assert error.value.param == "name"


def test_valid_names(registry: RegistryService) -> None:
    for name in ("Qwen/Qwen2.5-0.5B", "bge_m3", "a", "x" * 128):
        assert add_upstream(registry, name) is not None


def test_upstream_model(registry: RegistryService) -> None:
    version = registry.add_model(
        name="gpt", source="upstream", upstream_url="https://api.example.com/v1", api_key_env="OPENAI_API_KEY"
    )
    assert version.upstream_model == "gpt"
    assert version.api_key_env == "OPENAI_API_KEY"
    assert version.checksum is None and version.artifact_uri is None
    with pytest.raises(InvalidRequest, match="http"):
        registry.add_model(name="gpt", source="upstream", upstream_url="ftp://x")
    with pytest.raises(InvalidRequest, match="http"):
        registry.add_model(name="gpt", source="upstream")
    with pytest.raises(InvalidRequest, match="path"):
        registry.add_model(name="gpt", source="upstream", upstream_url="http://x", path="/tmp")
    with pytest.raises(InvalidRequest, match="upstream"):
        registry.add_model(name="gpt", source="demo", upstream_url="http://x")


def test_encoder_entry(registry: RegistryService) -> None:
    version = registry.add_model(
        name="e5-small", kind="embedding", source="encoder", metadata={"dimensions": 384, "说明": "多语言"}
    )
    assert version.source == "encoder" and version.artifact_uri is None
    assert version.metadata == {"dimensions": 384, "说明": "多语言"}
    with pytest.raises(InvalidRequest, match="embedding"):
        registry.add_model(name="e5", source="encoder")
    builtin = registry.add_model(name="e5-small", kind="embedding", source="encoder", path="builtin:e5")
    assert builtin.artifact_uri == "builtin:e5" and builtin.checksum is None
    with pytest.raises(InvalidRequest, match="not a directory"):
        registry.add_model(name="e5-small", kind="embedding", source="encoder", path="/no/such/dir")


def test_encoder_from_a_directory(registry: RegistryService, model_dir: Path) -> None:
    version = registry.add_model(name="bge", kind="embedding", source="encoder", path=model_dir)
    assert version.checksum == directory_checksum(model_dir)
    assert version.metadata["architecture"] == "LlamaForCausalLM"


def test_unknown_kind_and_source(registry: RegistryService) -> None:
    with pytest.raises(InvalidRequest, match="kind"):
        add_upstream(registry, kind="rerank")
    with pytest.raises(InvalidRequest, match="source"):
        registry.add_model(name="x", source="s3")


def test_resolve_forms(registry: RegistryService) -> None:
    add_upstream(registry)
    add_upstream(registry)
    registry.set_alias(name="gpt", alias="prod", version=1, actor="ops")
    assert registry.resolve("gpt").ref == "gpt@2"
    assert registry.resolve("gpt@1").ref == "gpt@1"
    assert registry.resolve("gpt:prod").ref == "gpt@1"
    assert registry.resolve("gpt:latest").ref == "gpt@2"
    assert registry.resolve("gpt:prod").aliases == ["prod"]


def test_resolve_errors_say_what_exists(registry: RegistryService) -> None:
    add_upstream(registry, "gpt")
    add_upstream(registry, "bge")
    with pytest.raises(ModelNotFound, match="Available models: bge, gpt") as error:
        registry.resolve("nope")
    assert error.value.param == "model" and error.value.status_code == 404
    with pytest.raises(ModelNotFound, match="has versions 1"):
        registry.resolve("gpt@7")
    with pytest.raises(ModelNotFound, match="has aliases latest"):
        registry.resolve("gpt:prod")
    with pytest.raises(ModelNotFound, match="positive integer"):
        registry.resolve("gpt@abc")


def test_parse_ref() -> None:
    assert parse_ref("a/b-1.5") == ("a/b-1.5", None)
    assert parse_ref("m@3") == ("m", 3)
    assert parse_ref("m:prod") == ("m", "prod")
    for impossible in ("m@0", "m@x", "m@", "m@99999999999999999999", "m@٣"):
        with pytest.raises(ModelNotFound):
            parse_ref(impossible)


def test_default_alias(registry: RegistryService) -> None:
    add_upstream(registry)
    add_upstream(registry)
    registry.set_alias(name="gpt", alias="stable", version=1)
    with pytest.raises(InvalidRequest, match="no alias"):
        registry.set_default_alias(name="gpt", alias="prod")
    assert registry.set_default_alias(name="gpt", alias="stable").default_alias == "stable"
    assert registry.resolve("gpt").ref == "gpt@1"
    with pytest.raises(Conflict, match="default alias"):
        registry.remove_alias(name="gpt", alias="stable")


def test_alias_validation(registry: RegistryService) -> None:
    add_upstream(registry)
    with pytest.raises(InvalidRequest, match="latest"):
        registry.set_alias(name="gpt", alias="latest", version=1)
    with pytest.raises(InvalidRequest, match="alias"):
        registry.set_alias(name="gpt", alias="1", version=1)
    with pytest.raises(ModelNotFound, match="has versions 1"):
        registry.set_alias(name="gpt", alias="prod", version=5)


def test_alias_history_and_time_travel(registry: RegistryService) -> None:
    add_upstream(registry)
    add_upstream(registry)
    before_any = utcnow()
    pause()
    registry.set_alias(name="gpt", alias="prod", version=1, actor="李四")
    pause()
    while_v1 = utcnow()
    pause()
    registry.set_alias(name="gpt", alias="prod", version=1, actor="李四")  # no change: no event
    registry.set_alias(name="gpt", alias="prod", version=2, actor="ops")
    pause()
    while_v2 = utcnow()
    pause()
    registry.remove_alias(name="gpt", alias="prod", actor="ops")

    history = registry.alias_history("gpt", "prod")
    assert [(e.from_version, e.to_version, e.actor) for e in history] == [
        (None, 1, "李四"),
        (1, 2, "ops"),
        (2, None, "ops"),
    ]
    assert history[0].at < history[1].at < history[2].at
    assert registry.resolve("gpt:prod", at=while_v1).ref == "gpt@1"
    assert registry.resolve("gpt:prod", at=while_v2).ref == "gpt@2"
    with pytest.raises(ModelNotFound):
        registry.resolve("gpt:prod", at=before_any)
    with pytest.raises(ModelNotFound):
        registry.resolve("gpt:prod")  # removed now
    with pytest.raises(ModelNotFound, match="does not exist at"):
        registry.resolve("gpt@2", at=before_any.replace(year=2000))
    assert registry.resolve("gpt", at=while_v1).ref == "gpt@2"  # latest, both existed
    with pytest.raises(InvalidRequest, match="timezone"):
        registry.resolve("gpt", at=while_v1.replace(tzinfo=None))


def test_remove_version(registry: RegistryService) -> None:
    for _ in range(3):
        add_upstream(registry)
    registry.set_alias(name="gpt", alias="prod", version=3)
    pause()
    while_v3 = utcnow()
    with pytest.raises(Conflict, match="prod"):
        registry.remove_version(name="gpt", version=3)
    registry.set_alias(name="gpt", alias="prod", version=1)
    registry.remove_version(name="gpt", version=3)
    assert registry.resolve("gpt").ref == "gpt@2"
    # Version numbers are never reused: refs in logs and history keep meaning one artifact.
    assert add_upstream(registry).ref == "gpt@4"
    with pytest.raises(ModelNotFound, match="since been removed"):
        registry.resolve("gpt:prod", at=while_v3)
    assert [e.to_version for e in registry.alias_history("gpt", "prod")] == [3, 1]
    with pytest.raises(ModelNotFound):
        registry.remove_version(name="gpt", version=3)


def test_remove_model(registry: RegistryService) -> None:
    add_upstream(registry)
    add_upstream(registry, "other")
    registry.set_alias(name="gpt", alias="prod", version=1)
    registry.remove_model("gpt")
    with pytest.raises(ModelNotFound):
        registry.get_model("gpt")
    with pytest.raises(ModelNotFound):
        registry.remove_model("gpt")
    assert [m.name for m in registry.list_models()] == ["other"]
    assert add_upstream(registry).ref == "gpt@1"
    assert registry.alias_history("gpt", "prod") == []


def test_list_models(registry: RegistryService, model_dir: Path) -> None:
    assert registry.list_models() == []
    add_upstream(registry, "zeta", description="最后")
    registry.add_model(name="alpha", source="local", path=model_dir)
    registry.add_model(name="alpha", source="local", path=model_dir)
    registry.set_alias(name="alpha", alias="prod", version=1)
    models = registry.list_models()
    assert [m.name for m in models] == ["alpha", "zeta"]
    assert [v.ref for v in models[0].versions] == ["alpha@1", "alpha@2"]
    assert models[0].aliases == {"latest": 2, "prod": 1}
    assert models[0].versions[0].aliases == ["prod"]
    assert models[0].latest is not None and models[0].latest.ref == "alpha@2"
    assert models[1].description == "最后"


def test_concurrent_adds_get_distinct_versions(registry: RegistryService) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        refs = list(pool.map(lambda _: add_upstream(registry, "busy").ref, range(18)))
    assert sorted(refs, key=lambda ref: int(ref.split("@")[1])) == [f"busy@{i}" for i in range(1, 19)]


def test_ids_are_never_reused_after_removal(registry: RegistryService) -> None:
    first = registry.add_model(name="gone", source="upstream", upstream_url="http://127.0.0.1:9/v1")
    registry.remove_model("gone")
    second = registry.add_model(name="new", source="upstream", upstream_url="http://127.0.0.1:9/v1")
    assert second.id != first.id
