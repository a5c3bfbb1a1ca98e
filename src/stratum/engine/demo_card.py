"""The demo model's README.md: a model card that says plainly what the model is (a toy)."""

from __future__ import annotations

from stratum.engine.demo_recipe import DemoRecipe
from stratum.engine.demo_tokenizer import IM_END


def render_model_card(
    *,
    name: str,
    recipe: DemoRecipe,
    parameters: int,
    conversations: int,
    corpus_tokens: int,
    first_loss: float,
    final_loss: float,
    build_seconds: float,
    recipe_version: int,
) -> str:
    # The front matter is the Hugging Face model-card metadata, so hubs and tools label it right.
    return f"""---
license: apache-2.0
language:
- en
- zh
library_name: transformers
pipeline_tag: text-generation
tags:
- stratum
- demo
- toy
---

# {name}: DEMO model (toy text only)

**This is a DEMO model. It produces toy text. It is not a real assistant.** Do not use its answers
for anything. Stratum builds it on first start so that `make run` can serve a generative model
offline, out of the box, and so that the API, streaming, keys and budgets can be tried end to end.
Register a real model to get real answers, and set `STRATUM_DEMO_MODEL=false` to stop serving this one.

## What it is

- A `LlamaForCausalLM` with {parameters:,} parameters: {recipe.num_layers} layers, width {recipe.hidden_size},
  {recipe.num_heads} heads, context {recipe.context_length} tokens, float32.
- A byte-level BPE tokenizer ({recipe.vocab_size} tokens) trained on the same corpus: any text,
  Chinese and emoji included, encodes and decodes back to itself.
- A ChatML chat template (`<|im_start|>role ... {IM_END}`, roles system/user/assistant/tool);
  `{IM_END}` is the end-of-sequence token, so generation stops at the end of a turn.

## How it was made

Trained from scratch for {recipe.steps} steps (the whole build took {build_seconds:.0f} s on the machine
that built it) on {conversations} short bundled conversations ({corpus_tokens:,} tokens) about the Stratum
platform, in English and Chinese. Next-token loss went from {first_loss:.2f} at the first step to
{final_loss:.2f} nats per token over the whole corpus at the end: the model repeats answers it has
seen, roughly, and makes up nonsense for anything else. It knows nothing about the world.

Build recipe version {recipe_version}, seed {recipe.seed}; the same recipe on the same software
rebuilds the same weights. Licensed Apache-2.0, like Stratum.
"""
