"""The embedded engine loads Llama-, Qwen2- and Mistral-style directories, in fp32 and bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig, Qwen2Config

from stratum.engine.base import GenerationRequest, SamplingParams
from stratum.engine.demo_conversations import load_conversations
from stratum.engine.demo_tokenizer import train_tokenizer, wrap_tokenizer
from stratum.engine.local import LocalEngine

SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}


def _build(target: Path, config_class: type) -> Path:
    tokenizer = wrap_tokenizer(train_tokenizer(load_conversations(), vocab_size=384), context_length=256)
    config = config_class(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPE,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.mark.parametrize("config_class", [Qwen2Config, MistralConfig], ids=["qwen2", "mistral"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
async def test_architecture_generates(tmp_path: Path, config_class: type, dtype: str) -> None:
    engine = LocalEngine(_build(tmp_path / "model", config_class), dtype=dtype)
    await engine.start()
    try:
        request = GenerationRequest(
            request_id="a",
            params=SamplingParams(max_tokens=6, temperature=0),
            messages=[{"role": "user", "content": "你好"}],
        )
        chunks = [c async for c in engine.generate(request)]
        again = [c async for c in engine.generate(request)]
    finally:
        await engine.close()
    assert engine.info.architecture == f"{config_class.__name__.removesuffix('Config')}ForCausalLM"
    assert engine.info.extra["dtype"] == dtype
    assert chunks[-1].finish_reason in ("stop", "length")
    assert "".join(c.text for c in chunks) == "".join(c.text for c in again)
