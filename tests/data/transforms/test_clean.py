from __future__ import annotations

from stratum.data.transforms.base import merged_params
from stratum.data.transforms.clean import STEP, clean_text, normalise_width


def test_width_keeps_chinese_punctuation() -> None:
    assert normalise_width("ＡＢＣ１２３　你好，世界！（测试）") == "ABC123 你好，世界！（测试）"
    assert normalise_width("①ﬁ") == "1fi"
    assert clean_text("\ufeff  Ｈｅｌｌｏ\u200b 世界  ", lowercase=True) == "hello 世界"


def test_clean_drops_empty_rows_and_reports() -> None:
    rows = [
        {"instruction": "  翻译：Ｈｅｌｌｏ ", "input": "", "output": "你好"},
        {"instruction": "\u200b  ", "input": "", "output": "空的"},
        {"instruction": "问候", "input": "", "output": "您好！"},
    ]
    out, report = STEP.apply(rows, "instruction", merged_params(STEP, {}))
    assert out == [
        {"instruction": "翻译：Hello", "input": "", "output": "你好"},
        {"instruction": "问候", "input": "", "output": "您好！"},
    ]
    assert (report.rows_in, report.rows_out, report.changed) == (3, 2, 1)
    assert report.dropped == {"empty": 1}
    assert report.examples[0].reason == "empty: instruction" and report.examples[0].index == 1


def test_clean_chat_lowercase() -> None:
    row = {"messages": [{"role": "user", "content": " HELLO 你好 "}, {"role": "assistant", "content": "Hi"}]}
    out, _ = STEP.apply([row], "chat", merged_params(STEP, {"lowercase": True}))
    assert out[0]["messages"] == [
        {"role": "user", "content": "hello 你好"},
        {"role": "assistant", "content": "hi"},
    ]
