from __future__ import annotations

import pytest

from stratum.data.transforms.augment import STEP as AUGMENT
from stratum.data.transforms.augment import SynonymTable
from stratum.data.transforms.base import merged_params
from stratum.data.transforms.split import STEP as SPLIT
from stratum.errors import InvalidRequest


def test_split_is_seeded_and_complete() -> None:
    rows = [{"instruction": f"问题{i}", "input": "", "output": "答"} for i in range(50)]
    out, report = SPLIT.apply(rows, "instruction", merged_params(SPLIT, {}))
    again, _ = SPLIT.apply(rows, "instruction", merged_params(SPLIT, {}))
    other, _ = SPLIT.apply(rows, "instruction", merged_params(SPLIT, {"seed": 7}))
    assert out == again and out != other
    assert report.details["splits"] == {"train": 40, "validation": 5, "test": 5}
    assert [r["instruction"] for r in out] == [r["instruction"] for r in rows]
    with pytest.raises(InvalidRequest):
        SPLIT.apply(rows, "instruction", merged_params(SPLIT, {"train": 0.9}))


def test_synonyms_chinese_and_english() -> None:
    import random

    table = SynonymTable([["怎么", "如何"], ["help", "assist"]])
    assert table.replace("怎么办？Help me", random.Random(0), 1.0) == "如何办？Assist me"
    assert table.replace("helpful", random.Random(0), 1.0) == "helpful"  # whole words only


def test_augment_marks_synthetic_and_keeps_outputs() -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": "请问怎么快速总结这篇文章？"},
                {"role": "assistant", "content": "先读摘要。"},
            ]
        },
        {"messages": [{"role": "user", "content": "无可替换"}, {"role": "assistant", "content": "好"}]},
    ]
    out, report = AUGMENT.apply(rows, "chat", merged_params(AUGMENT, {"p": 1.0}))
    assert len(out) == 3 and report.added == 1
    assert [r["synthetic"] for r in out] == [False, True, False]
    variant = out[1]["messages"]
    assert variant[0]["content"] != rows[0]["messages"][0]["content"]
    assert variant[1] == rows[0]["messages"][1]
    again, _ = AUGMENT.apply(rows, "chat", merged_params(AUGMENT, {"p": 1.0}))
    assert again == out
