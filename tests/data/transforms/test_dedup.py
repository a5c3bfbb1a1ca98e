from __future__ import annotations

from stratum.data.transforms.base import merged_params
from stratum.data.transforms.dedup import STEP, is_cjk, shingles


def _row(q: str, a: str) -> dict[str, str]:
    return {"instruction": q, "input": "", "output": a}


def test_shingles_are_characters_for_chinese_and_words_for_english() -> None:
    assert is_cjk("今天天气很好") and not is_cjk("the weather is nice")
    assert shingles("今天天气") == {"今天天", "天天气"}
    assert shingles("The weather is nice") == {"the weather is", "weather is nice"}


def test_exact_and_near_duplicates_are_removed_first_kept() -> None:
    rows = [
        _row(
            "请介绍一下北京的历史和文化，包括故宫、长城等著名景点。",
            "北京有三千多年的建城史和八百多年的建都史，是中国的政治文化中心。",
        ),
        _row(
            "请介绍一下北京的历史与文化，包括故宫、长城等著名景点。",
            "北京有三千多年的建城史和八百多年的建都史，是中国的政治文化中心。",
        ),  # near
        _row(
            "请介绍一下北京的历史和文化，包括故宫、长城等著名景点。 ",
            "北京有三千多年的建城史和八百多年的建都史，是中国的政治文化中心。",
        ),  # exact
        _row("上海有哪些好吃的小吃？", "生煎包和小笼包。"),
        _row(
            "Explain how a transformer model processes a long input sequence step by step",
            "It uses attention.",
        ),
        _row(
            "Explain how a transformer model processes a long input sequence step by step!",
            "It uses attention.",
        ),
        _row("What is the capital of France?", "Paris."),
    ]
    out, report = STEP.apply(rows, "instruction", merged_params(STEP, {}))
    assert [rows.index(r) for r in out] == [0, 3, 4, 6]
    assert report.dropped == {"exact_duplicate": 1, "near_duplicate": 2}
    reasons = {e.index: e.reason for e in report.examples}
    assert reasons[2] == "exact_duplicate: of row 0" and reasons[1] == "near_duplicate: of row 0"


def test_near_off_and_deterministic() -> None:
    rows = [
        _row("今天天气很好，我们去公园散步吧。", "好的"),
        _row("今天天气很好，我们去公园散步吧！", "好的"),
    ]
    out, report = STEP.apply(rows, "instruction", merged_params(STEP, {"near": False}))
    assert len(out) == 2 and report.dropped == {}
    first, _ = STEP.apply(rows, "instruction", merged_params(STEP, {"threshold": 0.5}))
    second, _ = STEP.apply(rows, "instruction", merged_params(STEP, {"threshold": 0.5}))
    assert first == second == rows[:1]
