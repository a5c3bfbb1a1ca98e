"""The demo model's tokenizer: byte-level BPE trained on the corpus, with a ChatML chat template.

Byte-level means the base vocabulary is the 256 byte values, so *any* text (Chinese, emoji, control
characters) encodes and decodes back to itself; the BPE merges learned on the corpus only make the
common byte sequences (English words, frequent Chinese characters) shorter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from stratum.engine.demo_conversations import Conversation

BOS_TOKEN = "<|bos|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
# The end of a turn is the end of sequence: generation stops when the assistant finishes its turn.
IM_END = "<|im_end|>"
# Order fixes the ids 0..3, so the specials are the same whatever the corpus.
SPECIAL_TOKENS = (BOS_TOKEN, PAD_TOKEN, IM_START, IM_END)

# ChatML, as Qwen and others use it: ``<|im_start|>role\n…<|im_end|>\n`` per turn. Content may be a
# string, a list of OpenAI content parts (text parts are kept), or null next to ``tool_calls``; tool
# calls are rendered as the JSON object the corpus teaches, ``{"name": …, "arguments": …}``.
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- elif message['content'] is iterable -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- for call in message.get('tool_calls') or [] -%}"
    "{%- set function = call['function'] if call['function'] is defined else call -%}"
    "{%- if not loop.first or message['content'] -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '{\"name\": ' + (function['name'] | tojson) + ', \"arguments\": ' -}}"
    "{%- if function['arguments'] is string -%}{{- function['arguments'] -}}"
    "{%- else -%}{{- function['arguments'] | tojson -}}{%- endif -%}"
    "{{- '}' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _training_texts(conversations: Iterable[Conversation]) -> Iterable[str]:
    # Each turn as the template writes it minus the specials, so the role names in the headers
    # become single tokens too.
    for conversation in conversations:
        for message in conversation:
            yield f"{message['role']}\n{message['content']}"


def train_tokenizer(conversations: Sequence[Conversation], *, vocab_size: int) -> Tokenizer:
    """Train byte-level BPE (deterministic: the trainer breaks count ties by token id)."""
    tokenizer = Tokenizer(models.BPE())
    # GPT-2's pre-tokenizer splits words and punctuation before merging; add_prefix_space=False keeps
    # decode(encode(text)) == text exactly (no space invented at the start).
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        # A merge seen once teaches nothing and wastes a row of the embedding.
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 bytes are in the vocabulary even if the corpus never uses them: nothing is unknown.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_texts(conversations), trainer=trainer)
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    # Plain encodes (the completions endpoint) start with <|bos|>, like every training sequence; the
    # chat template writes its own bos and transformers encodes it without special tokens.
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A",
                pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
    return tokenizer


def special_token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"the demo tokenizer has no {token} token")
    return token_id


def wrap_tokenizer(tokenizer: Tokenizer, *, context_length: int) -> PreTrainedTokenizerFast:
    """The transformers tokenizer the server loads with ``AutoTokenizer.from_pretrained``."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        chat_template=CHAT_TEMPLATE,
        model_max_length=context_length,
        # Batched generation pads on the left so every prompt ends where the new tokens start.
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
