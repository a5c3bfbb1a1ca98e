"""Multi-LoRA in the embedded engine: several adapters and base-only rows in one fused batch give,
for every sequence, exactly the greedy output plain ``peft``/``transformers`` give for it alone.

The reference runs each request on its own with ``PeftModel.generate`` (or the bare model), then
applies the same stop/max_tokens rules; the engine runs all of them at once, with prompts of mixed
lengths chunked into the same rounds. See ``test_batching.py`` for why tokens (not logits bit for
bit) are what batched and unbatched runs share.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from stratum.engine.adapter_config import read_adapter_config
from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.local import LocalEngine
from stratum.engine.lora import load_adapter, router_of
from stratum.errors import InvalidRequest, Overloaded
from tests.tiny import build_tiny_llama, build_tiny_lora, reference_greedy

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Dirs:
    base: Path
    adapters: dict[str, Path]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> Dirs:
    root = tmp_path_factory.mktemp("lora")
    base = build_tiny_llama(root / "base")
    adapters = {
        "a": build_tiny_lora(base, root / "a", seed=1),
        # q_proj is targeted by all three: a round with 3+ adapter groups there takes the stacked path.
        "b": build_tiny_lora(
            base, root / "b", seed=2, rank=8, modules=("q_proj", "k_proj", "o_proj", "up_proj")
        ),
        "c": build_tiny_lora(base, root / "c", seed=3, rank=2, modules=("q_proj", "gate_proj"), rslora=True),
    }
    return Dirs(base=base, adapters=adapters)


def _request(content: str, adapter: str | None, **params: object) -> GenerationRequest:
    return GenerationRequest(
        request_id=f"{adapter}:{content}",
        params=SamplingParams(temperature=0, **params),  # type: ignore[arg-type]
        messages=[{"role": "user", "content": content}],
        adapter=adapter,
    )


def _reference(dirs: Dirs, requests: list[GenerationRequest]) -> list[str]:
    """Each request alone through plain transformers (+ peft for adapters), greedy."""
    texts = []
    for request in requests:
        assert request.messages is not None and request.params.max_tokens is not None
        adapter = dirs.adapters[request.adapter] if request.adapter is not None else None
        text = reference_greedy(
            dirs.base, adapter, list(request.messages), max_tokens=request.params.max_tokens
        )
        for stop in request.params.stop:  # the engine cuts at the earliest stop, never emitting it
            if stop in text:
                text = text[: text.index(stop)]
        texts.append(text)
    return texts


@pytest.fixture
async def engine(dirs: Dirs) -> AsyncIterator[LocalEngine]:
    # A small prefill chunk so long prompts are split and newcomers mix with decoding rows.
    engine = LocalEngine(dirs.base, max_batch=16, max_queue=16, prefill_chunk=12)
    await engine.start()
    for name, path in dirs.adapters.items():
        await engine.load_adapter(name, path)
    yield engine
    await engine.close()


async def _text(engine: LocalEngine, request: GenerationRequest) -> str:
    return "".join([chunk.text async for chunk in engine.generate(request)])


async def test_adapters_change_the_output(engine: LocalEngine) -> None:
    outputs = {
        a: await _text(engine, _request("你好，Stratum", a, max_tokens=12)) for a in [None, "a", "b", "c"]
    }
    assert len(set(outputs.values())) == 4, outputs


@pytest.mark.slow
async def test_mixed_batch_equals_each_alone_in_peft(engine: LocalEngine, dirs: Dirs) -> None:
    """Three adapters and base rows, mixed prompt lengths, stops and max_tokens, all in flight at
    once: every sequence's text equals peft/transformers greedy decoding of it alone."""
    contents = ["hi", "今天天气怎么样？请详细说明一下原因。", "What is Stratum? " * 4, "写一首关于大海的诗"]
    requests = []
    for i, content in enumerate(contents):
        for j, adapter in enumerate([None, "a", "b", "c"]):
            requests.append(_request(content, adapter, max_tokens=4 + 3 * ((i + j) % 4)))
    full = _reference(dirs, requests)
    # Stops taken from the reference's own text, so they do fire mid-answer.
    for index in (1, 6, 11):
        if len(full[index]) > 3:
            base = requests[index]
            stop = full[index][2:4]
            requests[index] = _request(
                base.messages[0]["content"],  # type: ignore[index]
                base.adapter,
                max_tokens=base.params.max_tokens,
                stop=(stop,),
            )
    expected = _reference(dirs, requests)
    together = await asyncio.gather(*[_text(engine, r) for r in requests])
    assert together == expected
    # The q_proj layers saw rounds with 3 adapters: they took the stacked path at least once.
    layers = router_of(engine._model)._layers
    assert any(layer._stack is not None for path, layer in layers.items() if path.endswith("q_proj"))
    # Alone through the engine as well (batch of one), same answers.
    alone = [await _text(engine, r) for r in requests[::5]]
    assert alone == expected[::5]


async def test_unload_while_running_finishes_then_frees(engine: LocalEngine) -> None:
    expected = await _text(engine, _request("写一篇长文章", "a", max_tokens=30))
    stream = engine.generate(_request("写一篇长文章", "a", max_tokens=30))
    first = await stream.__anext__()
    await engine.unload_adapter("a")
    assert "a" not in engine.adapters
    with pytest.raises(Overloaded, match="not loaded"):
        engine.generate(_request("hi", "a", max_tokens=3))
    rest = "".join([chunk.text async for chunk in stream])
    assert first.text + rest == expected  # the running sequence kept its adapter to the end
    assert not engine.adapter_in_use("a")
    for _ in range(100):  # removed by the scheduler right after the round that ended the sequence
        if engine.adapter_bytes("a") == 0:
            break
        await asyncio.sleep(0.02)
    assert engine.adapter_bytes("a") == 0
    # The other adapters are untouched, and "a" can come back without a restart.
    assert engine.adapters == ["b", "c"]


async def test_reload_after_unload_gives_the_same_answers(engine: LocalEngine, dirs: Dirs) -> None:
    before = await _text(engine, _request("中文测试", "b", max_tokens=10))
    await engine.unload_adapter("b")
    nbytes = await engine.load_adapter("b", dirs.adapters["b"])
    assert nbytes == engine.adapter_bytes("b") > 0
    assert await _text(engine, _request("中文测试", "b", max_tokens=10)) == before


async def test_adapter_for_another_base_is_refused(engine: LocalEngine, tmp_path: Path) -> None:
    other_base = tmp_path / "wider"
    config = LlamaConfig(
        vocab_size=384, hidden_size=96, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
    )
    LlamaForCausalLM(config).save_pretrained(other_base)
    adapter = build_tiny_lora(other_base, tmp_path / "foreign", seed=5)
    with pytest.raises(InvalidRequest, match="another base"):
        await engine.load_adapter("foreign", adapter)
    assert "foreign" not in engine.adapters
    assert await _text(engine, _request("hi", None, max_tokens=3))


def test_bad_adapter_directories(tmp_path: Path, dirs: Dirs) -> None:
    with pytest.raises(InvalidRequest, match=r"adapter_config\.json"):
        read_adapter_config(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(InvalidRequest, match="not a LoRA"):
        read_adapter_config(tmp_path)
    config = json.loads((dirs.adapters["a"] / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps(config | {"use_dora": True}))
    with pytest.raises(InvalidRequest, match="DoRA"):
        read_adapter_config(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidRequest, match="safetensors"):
        read_adapter_config(tmp_path)
    weights = load_adapter(dirs.adapters["c"], dtype=torch.float32)
    # rsLoRA: alpha / sqrt(r) (alpha = 2r = 4, r = 2).
    assert {round(d.scaling, 6) for d in weights.deltas.values()} == {round(4 / 2**0.5, 6)}
    assert len(weights.deltas) == 4  # q_proj and gate_proj in each of the 2 layers
