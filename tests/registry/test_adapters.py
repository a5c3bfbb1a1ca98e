"""Adapter versions: linked to the exact base version, its checksum recorded and enforced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from stratum.errors import Conflict, InvalidRequest, ModelNotFound
from stratum.registry import RegistryService
from stratum.registry.checksum import directory_checksum
from stratum.registry.tables import ModelVersionRow
from stratum.storage import Database
from tests.registry.conftest import write_safetensors


@pytest.fixture
def registry(db: Database) -> RegistryService:
    return RegistryService(db)


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    root = tmp_path / "support-bot"
    root.mkdir()
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    (root / "adapter_config.json").write_text(json.dumps(config))
    write_safetensors(
        root / "adapter_model.safetensors",
        {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": [4, 8]},
    )
    return root


def test_adapter_is_linked_to_the_exact_base(
    registry: RegistryService, model_dir: Path, adapter_dir: Path
) -> None:
    base = registry.add_model(name="qwen-mini", source="local", path=model_dir)
    registry.set_alias(name="qwen-mini", alias="prod", version=1)
    adapter = registry.add_model(
        name="support-bot",
        source="local",
        variant="adapter",
        base="qwen-mini:prod",  # an alias is pinned to the version it names now
        path=adapter_dir,
        description="客服机器人",
    )
    assert adapter.variant == "adapter"
    assert adapter.base_version_id == base.id
    assert adapter.checksum == directory_checksum(adapter_dir)
    assert adapter.metadata["base"] == "qwen-mini@1"
    assert adapter.metadata["base_checksum"] == base.checksum
    assert adapter.metadata["rank"] == 4
    assert adapter.metadata["target_modules"] == ["q_proj", "v_proj"]
    # A new base version does not move the adapter.
    registry.add_model(name="qwen-mini", source="local", path=model_dir)
    assert registry.adapter_base(registry.resolve("support-bot")).ref == "qwen-mini@1"
    # The base cannot be removed from under its adapter.
    registry.remove_alias(name="qwen-mini", alias="prod")
    with pytest.raises(Conflict, match="built on"):
        registry.remove_version(name="qwen-mini", version=1)
    with pytest.raises(Conflict):
        registry.remove_model("qwen-mini")


def test_changed_base_checksum_is_refused(
    registry: RegistryService, db: Database, model_dir: Path, adapter_dir: Path
) -> None:
    base = registry.add_model(name="qwen-mini", source="local", path=model_dir)
    adapter = registry.add_model(
        name="support-bot", source="local", variant="adapter", base="qwen-mini@1", path=adapter_dir
    )
    with db.session() as session:
        session.execute(
            update(ModelVersionRow).where(ModelVersionRow.id == base.id).values(checksum="0" * 64)
        )
    with pytest.raises(Conflict) as refused:
        registry.adapter_base(adapter)
    assert refused.value.code == "adapter_base_mismatch"
    assert "qwen-mini@1" in refused.value.message


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"base": None}, InvalidRequest, "needs 'base'"),
        ({"base": "nothing@1"}, ModelNotFound, "nothing"),
        ({"base": "qwen-mini@7"}, ModelNotFound, "qwen-mini@7"),
        ({"base": "gpt@1"}, InvalidRequest, "cannot be an adapter's base"),
        ({"variant": "full"}, InvalidRequest, "only applies"),
        ({"kind": "embedding"}, InvalidRequest, "local chat"),
    ],
)
def test_bad_adapters(
    registry: RegistryService,
    model_dir: Path,
    adapter_dir: Path,
    kwargs: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    registry.add_model(name="qwen-mini", source="local", path=model_dir)
    registry.add_model(name="gpt", source="upstream", upstream_url="https://api.example.com/v1")
    args: dict[str, object] = {"variant": "adapter", "base": "qwen-mini@1", "path": adapter_dir} | kwargs
    with pytest.raises(error, match=match):
        registry.add_model(name="bot", source="local", **args)  # type: ignore[arg-type]
    with pytest.raises(ModelNotFound):
        registry.get_model("bot")


def test_adapter_on_an_adapter_and_non_adapter_dirs(
    registry: RegistryService, model_dir: Path, adapter_dir: Path
) -> None:
    registry.add_model(name="qwen-mini", source="local", path=model_dir)
    registry.add_model(name="bot", source="local", variant="adapter", base="qwen-mini@1", path=adapter_dir)
    with pytest.raises(InvalidRequest, match="another adapter"):
        registry.add_model(name="bot2", source="local", variant="adapter", base="bot@1", path=adapter_dir)
    with pytest.raises(InvalidRequest, match="adapter_config"):
        registry.add_model(name="bot2", source="local", variant="adapter", base="qwen-mini@1", path=model_dir)
