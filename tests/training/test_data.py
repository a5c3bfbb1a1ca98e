"""Row formats, chat-template tokenisation with the prompt masked, errors naming row and field,
and the loop's pure functions (data order, learning-rate schedule)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from stratum.errors import InvalidRequest
from stratum.training.data import IGNORE, preference_examples, read_jsonl, sft_examples, to_messages
from stratum.training.loop import DataOrder, LoopSettings, learning_rate, steps_for
from tests.training.conftest import CHAT_ROWS, PREFERENCE_ROWS


@pytest.fixture(scope="module")
def tokenizer(tiny_dir: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(tiny_dir)


def test_row_formats_become_conversations() -> None:
    assert to_messages({"instruction": "翻译", "input": "你好", "output": "hello"}, "r") == [
        {"role": "user", "content": "翻译\n\n你好"},
        {"role": "assistant", "content": "hello"},
    ]
    assert to_messages({"prompt": "问", "completion": "答"}, "r")[-1] == {
        "role": "assistant",
        "content": "答",
    }
    with pytest.raises(InvalidRequest, match="row 3: field 'output'"):
        to_messages({"instruction": "x"}, "row 3")
    with pytest.raises(InvalidRequest, match=r"messages\[1\].role"):
        to_messages({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}, "r")
    with pytest.raises(InvalidRequest, match="last message must be the assistant"):
        to_messages({"messages": [{"role": "user", "content": "a"}]}, "r")


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "问", "completion": "答"}\n\n{broken\n', encoding="utf-8")
    with pytest.raises(InvalidRequest, match="line 3: not JSON"):
        read_jsonl(path)
    with pytest.raises(InvalidRequest, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_sft_learns_only_the_answer(tokenizer) -> None:  # type: ignore[no-untyped-def]
    examples = sft_examples(tokenizer, CHAT_ROWS, max_length=512, train_on_prompt=False, source="chat")
    first = examples[0]
    learned = [t for t, label in zip(first.input_ids, first.labels, strict=True) if label != IGNORE]
    text = tokenizer.decode(learned)
    assert "企业大模型平台" in text and "Stratum 是什么" not in text
    prompt_len = first.labels.index(next(label for label in first.labels if label != IGNORE))
    assert "Stratum 是什么" in tokenizer.decode(first.input_ids[:prompt_len])
    everything = sft_examples(tokenizer, CHAT_ROWS[:1], max_length=512, train_on_prompt=True, source="chat")
    assert everything[0].labels == everything[0].input_ids
    with pytest.raises(InvalidRequest, match="nothing left to learn"):
        sft_examples(tokenizer, CHAT_ROWS[:1], max_length=8, train_on_prompt=False, source="chat")


def test_preference_pairs_keep_answers_whole(tokenizer) -> None:  # type: ignore[no-untyped-def]
    pairs = preference_examples(tokenizer, PREFERENCE_ROWS, max_length=24, source="prefs")
    assert tokenizer.decode(pairs[0].chosen_ids).startswith("蓝色")
    assert pairs[0].chosen_ids[-1] == tokenizer.eos_token_id
    assert all(len(p.prompt_ids) + len(p.rejected_ids) <= 24 for p in pairs)
    with pytest.raises(InvalidRequest, match="row 1: field 'chosen'"):
        preference_examples(tokenizer, [{"prompt": "p", "rejected": "r"}], max_length=64, source="prefs")


def test_data_order_is_a_function_of_seed_and_position() -> None:
    order = DataOrder(5, seed=1)
    run = order.indices(0, 12)
    assert sorted(run[:5]) == list(range(5)) and sorted(run[5:10]) == list(range(5))
    assert DataOrder(5, seed=1).indices(7, 5) == run[7:12]  # a resumed run sees the same examples
    assert DataOrder(5, seed=2).indices(0, 5) != run[:5]


def test_schedule_and_step_count() -> None:
    settings = LoopSettings(
        total_steps=10,
        batch_size=2,
        grad_accum=1,
        learning_rate=1.0,
        weight_decay=0,
        warmup_steps=2,
        max_grad_norm=1,
        seed=0,
        checkpoint_every=5,
        keep_checkpoints=1,
    )
    assert [learning_rate(settings, s) for s in (0, 1, 2, 9)] == [0.5, 1.0, 1.0, 0.125]
    assert steps_for(examples=10, batch_size=4, grad_accum=1, max_steps=None, epochs=2) == 5
    assert steps_for(examples=10, batch_size=4, grad_accum=1, max_steps=3, epochs=None) == 3
