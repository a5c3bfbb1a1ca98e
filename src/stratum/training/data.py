"""Training examples: rows from a JSONL file or a dataset version, through the chat template.

Row formats (detected per row): chat ``{"messages": [{"role", "content"}, …]}``,
``{"instruction", "input"?, "output"}``, ``{"prompt", "completion"}``; preference rows
``{"prompt", "chosen", "rejected"}`` (the prompt a string or a list of messages). A bad row is an
error naming its line and field, before any training starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratum.errors import InvalidRequest

IGNORE = -100  # label of tokens the loss skips (the prompt, padding)
_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class SFTExample:
    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class PreferenceExample:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidRequest(
            f"cannot read dataset {path}: {exc.strerror or exc}", param="dataset_path"
        ) from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"{path} line {number}: not JSON ({exc.msg})", param="dataset_path"
            ) from None
        if not isinstance(row, dict):
            raise InvalidRequest(f"{path} line {number}: expected an object", param="dataset_path")
        rows.append(row)
    if not rows:
        raise InvalidRequest(f"dataset {path} has no rows", param="dataset_path")
    return rows


def _text(row: dict[str, Any], field: str, where: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{where}: field '{field}' must be a non-empty string", param="dataset")
    return value


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"{where}: field 'messages' must be a non-empty list", param="dataset")
    out = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise InvalidRequest(f"{where}: messages[{index}].role must be one of {_ROLES}", param="dataset")
        if not isinstance(message.get("content"), str):
            raise InvalidRequest(f"{where}: messages[{index}].content must be a string", param="dataset")
        out.append({"role": message["role"], "content": message["content"]})
    return out


def to_messages(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    """An SFT row as a conversation whose last message is the assistant's answer to learn."""
    if "messages" in row:
        messages = _messages(row["messages"], where)
    elif "instruction" in row:
        prompt = _text(row, "instruction", where)
        extra = row.get("input")
        if isinstance(extra, str) and extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": _text(row, "output", where)},
        ]
    elif "prompt" in row and "completion" in row:
        messages = [
            {"role": "user", "content": _text(row, "prompt", where)},
            {"role": "assistant", "content": _text(row, "completion", where)},
        ]
    else:
        raise InvalidRequest(
            f"{where}: expected 'messages', 'instruction'/'output' or 'prompt'/'completion'", param="dataset"
        )
    if messages[-1]["role"] != "assistant":
        raise InvalidRequest(f"{where}: the last message must be the assistant's", param="dataset")
    return messages


def _template(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> list[int]:
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)
    # No template (a base model): a plain "role: text" transcript the model can still learn.
    text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
    if generation_prompt:
        text += "assistant: "
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    return list(ids)


def sft_examples(
    tokenizer: Any, rows: list[dict[str, Any]], *, max_length: int, train_on_prompt: bool, source: str
) -> list[SFTExample]:
    """Tokenise through the chat template; the loss covers the last assistant message only
    (unless ``train_on_prompt``)."""
    examples = []
    for number, row in enumerate(rows, start=1):
        where = f"{source} row {number}"
        messages = to_messages(row, where)
        full = _template(tokenizer, messages, generation_prompt=False)
        prompt = _template(tokenizer, messages[:-1], generation_prompt=True)
        if train_on_prompt or full[: len(prompt)] != prompt:
            labels = list(full)
        else:
            labels = [IGNORE] * len(prompt) + full[len(prompt) :]
        full, labels = full[:max_length], labels[:max_length]
        if all(label == IGNORE for label in labels):
            raise InvalidRequest(
                f"{where}: nothing left to learn within max_length={max_length} tokens", param="max_length"
            )
        examples.append(SFTExample(full, labels))
    return examples


def preference_examples(
    tokenizer: Any, rows: list[dict[str, Any]], *, max_length: int, source: str
) -> list[PreferenceExample]:
    examples = []
    eos = tokenizer.eos_token_id
    for number, row in enumerate(rows, start=1):
        where = f"{source} row {number}"
        prompt = row.get("prompt")
        if isinstance(prompt, list):
            messages = _messages(prompt, where)
        else:
            messages = [{"role": "user", "content": _text(row, "prompt", where)}]
        prompt_ids = _template(tokenizer, messages, generation_prompt=True)
        answers = []
        for field in ("chosen", "rejected"):
            ids = tokenizer(_text(row, field, where), add_special_tokens=False)["input_ids"]
            answers.append(list(ids) + ([eos] if eos is not None else []))
        # Keep the answers whole and cut the prompt from the left if the pair is too long.
        room = max_length - max(len(a) for a in answers)
        if room < 1:
            raise InvalidRequest(
                f"{where}: an answer is longer than max_length={max_length}", param="max_length"
            )
        examples.append(PreferenceExample(prompt_ids[-room:], answers[0], answers[1]))
    return examples
