"""Turning chat messages and text prompts into token ids with the model's own tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stratum.errors import InvalidRequest, UnsupportedFeature


class PromptBuilder:
    """Wraps a Hugging Face tokenizer: chat template rendering, encoding and decoding."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidRequest(
                "this model has no chat template; use /v1/completions with a plain prompt",
                param="messages",
                code="no_chat_template",
            )
        try:
            rendered = self.tokenizer.apply_chat_template(
                [_template_message(m) for m in messages], add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja raises its own errors for templates that reject a role order
            raise InvalidRequest(f"the model's chat template rejected the messages: {exc}") from exc
        # The template already contains the BOS/special tokens it wants.
        return list(self.tokenizer.encode(rendered, add_special_tokens=False))

    def text(self, prompt: str) -> list[int]:
        return list(self.tokenizer.encode(prompt, add_special_tokens=True))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))


def _template_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        if any(part.get("type") != "text" for part in content):
            raise UnsupportedFeature(
                "this model reads text only; image and audio content parts are not supported",
                param="messages",
            )
        content = "".join(str(part.get("text", "")) for part in content)
    out = {k: v for k, v in message.items() if v is not None}
    out["content"] = content or ""
    return out
