"""Tiny Llama models built from a config with fixed seeds (no hub downloads), shared by tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from stratum.engine.demo_conversations import load_conversations
from stratum.engine.demo_tokenizer import train_tokenizer, wrap_tokenizer


def build_tiny_llama(target: Path, *, seed: int = 0, context_length: int = 256) -> Path:
    """A 2-layer, 64-wide Llama with random weights and the demo's byte-level tokenizer."""
    tokenizer = wrap_tokenizer(
        train_tokenizer(load_conversations(), vocab_size=384), context_length=context_length
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def build_tiny_lora(
    base: Path,
    target: Path,
    *,
    seed: int,
    rank: int = 4,
    modules: tuple[str, ...] = ("q_proj", "v_proj", "down_proj"),
    rslora: bool = False,
) -> Path:
    """A PEFT LoRA adapter for ``base`` with random A *and* B (a fresh LoRA has B = 0, which would
    not change the output), saved as PEFT does: adapter_config.json + adapter_model.safetensors."""
    from peft import LoraConfig, get_peft_model

    model = LlamaForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=list(modules), init_lora_weights=False, use_rslora=rslora
    )
    torch.manual_seed(seed)
    get_peft_model(model, config).save_pretrained(target)
    return target


def reference_greedy(
    base: Path, adapter: Path | None, messages: list[dict[str, str]], *, max_tokens: int
) -> str:
    """Greedy text of one chat request alone, through plain transformers (+ peft for an adapter)."""
    from transformers import AutoTokenizer

    from stratum.engine.prompting import PromptBuilder

    tokenizer = AutoTokenizer.from_pretrained(base)
    prompts = PromptBuilder(tokenizer)
    model = LlamaForCausalLM.from_pretrained(base).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).eval()
    ids = prompts.chat(messages)
    eos = tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_tokens,
            do_sample=False,
            pad_token_id=eos,
        )
    return str(prompts.decode([t for t in out[0, len(ids) :].tolist() if t != eos]))
