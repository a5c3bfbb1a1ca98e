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
