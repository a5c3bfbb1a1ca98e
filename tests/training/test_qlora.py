"""QLoRA: LoRA trained on a 4-bit (nf4, bitsandbytes on CPU) copy of the tiny Llama, then served on
the fp32 base by the embedded engine, and merged into the fp32 base."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.local import LocalEngine
from stratum.errors import InvalidRequest
from stratum.registry.service import RegistryService
from stratum.storage import Database
from stratum.training import model as parts
from stratum.training import sft
from stratum.training.config import TrainConfig
from tests.conftest import fresh_database
from tests.tiny import reference_greedy
from tests.training.test_methods import _context


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """SQLite only: these runs test training, not the store (the jobs and registry suites run on
    both backends), and each costs tens of seconds of CPU per backend."""
    with fresh_database("sqlite", tmp_path) as database:
        database.migrate()
        yield database


pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

PROMPT = [{"role": "user", "content": "问题 1：Stratum 是什么？"}]


@pytest.fixture
def store(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("STRATUM_DATABASE_URL", db.url.render_as_string(hide_password=False))
    return db


def _losses(workdir: Path) -> list[float]:
    last = sorted((workdir / "checkpoints").glob("step-*"))[-1]
    return list(json.loads((last / "state.json").read_text(encoding="utf-8"))["losses"])


def test_the_base_is_held_in_4_bits(tiny_dir: Path) -> None:
    import bitsandbytes

    config = TrainConfig(base_path=str(tiny_dir), dataset_path="x.jsonl", method="qlora")
    model, named = parts.load_model(tiny_dir, config)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj  # type: ignore[union-attr]
    assert isinstance(layer.base_layer, bitsandbytes.nn.Linear4bit)
    assert layer.base_layer.weight.dtype == torch.uint8  # packed nf4
    assert layer.base_layer.weight.quant_state.quant_type == "nf4"
    assert named and all("lora_" in name and p.dtype == torch.float32 for name, p in named)
    # Two nf4 values per stored byte: the count matches the fp32 model's.
    from transformers import AutoModelForCausalLM

    fp32 = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert parts.parameter_count(model) == sum(p.numel() for p in fp32.parameters()) + sum(
        p.numel() for _, p in named
    )


async def test_qlora_trains_registers_and_serves_on_the_fp32_base(
    store: Database, tmp_path: Path, tiny_registered: str, tiny_dir: Path, chat_data: Path
) -> None:
    config = {"base": tiny_registered, "dataset_path": str(chat_data), "method": "qlora", "max_steps": 12}
    config |= {"learning_rate": 1e-2, "batch_size": 4, "checkpoint_every": 6, "output": "tiny-qlora"}
    context = _context(tmp_path, "sft", config)
    result = sft.run(context)

    losses = _losses(context.workdir)
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    version = RegistryService(store).resolve(result["model"])
    assert version.variant == "adapter" and version.metadata["base"] == tiny_registered
    assert version.metadata["training"]["method"] == "qlora"
    adapter = Path(result["adapter_path"])

    engine = LocalEngine(tiny_dir, max_batch=4, max_queue=4)
    await engine.start()
    try:
        await engine.load_adapter("qlora", adapter)
        texts = {}
        for name in (None, "qlora"):
            request = GenerationRequest(
                request_id=f"r-{name}",
                params=SamplingParams(temperature=0, max_tokens=16),
                messages=PROMPT,
                adapter=name,
            )
            texts[name] = "".join([chunk.text async for chunk in engine.generate(request)])
    finally:
        await engine.close()
    # The engine serves the adapter on the fp32 base exactly as peft does, and it changed the output.
    assert texts["qlora"] == reference_greedy(tiny_dir, adapter, PROMPT, max_tokens=16)
    assert texts["qlora"] != texts[None]


def test_qlora_on_a_base_path_merges_into_the_fp32_base(
    store: Database, tmp_path: Path, tiny_dir: Path, chat_data: Path
) -> None:
    from safetensors.torch import load_file

    config = {"base_path": str(tiny_dir), "dataset_path": str(chat_data), "method": "qlora", "max_steps": 6}
    config |= {"learning_rate": 1e-2, "output": "qlora-merged"}
    context = _context(tmp_path, "sft", config)
    result = sft.run(context)
    merged = Path(result["model_path"])
    weights = load_file(str(merged / "model.safetensors"))
    base = load_file(str(tiny_dir / "model.safetensors"))
    # A plain fp32 model with the base's tensors (no 4-bit leftovers), the attention ones updated.
    assert set(weights) == set(base) and all(t.dtype == torch.float32 for t in weights.values())
    changed = {name for name in base if not torch.equal(base[name], weights[name])}
    assert changed and all("self_attn" in name for name in changed)
    # Sane: the merged model generates what the adapter on the fp32 base generates.
    adapter = Path(result["adapter_path"])
    expected = reference_greedy(tiny_dir, adapter, PROMPT, max_tokens=16)
    assert reference_greedy(merged, None, PROMPT, max_tokens=16) == expected
    assert RegistryService(store).resolve(result["model"]).variant == "full"


def test_qlora_without_bitsandbytes_names_the_extra(
    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if not installed
    config = TrainConfig(base_path=str(tiny_dir), dataset_path="x.jsonl", method="qlora")
    with pytest.raises(InvalidRequest, match=r"pip install 'stratum\[qlora\]'"):
        parts.load_model(tiny_dir, config)


def test_dpo_with_qlora_prefers_the_chosen_answers(
    store: Database, tmp_path: Path, tiny_registered: str, preference_data: Path
) -> None:
    from stratum.training import dpo

    # The reference is the 4-bit base with the adapter disabled: the first step starts at log 2.
    config = {"base": tiny_registered, "dataset_path": str(preference_data), "method": "qlora"}
    config |= {"max_steps": 10, "learning_rate": 5e-3, "batch_size": 5, "beta": 0.5, "register": False}
    context = _context(tmp_path, "dpo", config)
    dpo.run(context)
    losses = _losses(context.workdir)
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)
    assert context.metrics["final_loss"] < 0.6931 and context.metrics["reward_accuracy"] > 0.5
