from __future__ import annotations

import pytest

from stratum.data.transforms.base import merged_params
from stratum.data.transforms.filters import LENGTH, SENSITIVE, WordMatcher
from stratum.errors import InvalidRequest


def _row(q: str, a: str) -> dict[str, str]:
    return {"prompt": q, "chosen": a, "rejected": "不"}


def test_length_counts_characters() -> None:
    rows = [_row("短", "好"), _row("这是一个长度适中的问题", "这是答案"), _row("长" * 50, "好")]
    out, report = LENGTH.apply(rows, "preference", merged_params(LENGTH, {"min_chars": 6, "max_chars": 40}))
    assert out == [rows[1]]
    assert report.dropped == {"too_short": 1, "too_long": 1}
    out, _ = LENGTH.apply(rows, "preference", merged_params(LENGTH, {"max_chars": 3, "field": "chosen"}))
    assert len(out) == 2
    with pytest.raises(InvalidRequest):
        LENGTH.apply(rows, "preference", merged_params(LENGTH, {}))
    with pytest.raises(InvalidRequest, match="no parameter 'maxchars'"):
        merged_params(LENGTH, {"maxchars": 3})


def test_sensitive_drop_and_mask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = [_row("这里有违禁词A吗", "没有"), _row("正常的问题", "正常的回答"), _row("SECRET plan", "ok")]
    words = tmp_path / "words.txt"
    words.write_text("# list\n违禁词a\nsecret\n", encoding="utf-8")
    out, report = SENSITIVE.apply(rows, "preference", merged_params(SENSITIVE, {"words_file": str(words)}))
    assert out == [rows[1]] and report.dropped == {"sensitive_word": 2}
    out, report = SENSITIVE.apply(
        rows, "preference", merged_params(SENSITIVE, {"words": ["违禁词A", "secret"], "action": "mask"})
    )
    assert [r["prompt"] for r in out] == ["这里有****吗", "正常的问题", "****** plan"]
    assert report.changed == 2 and report.details["matches"] == {"违禁词a": 1, "secret": 1}
    assert WordMatcher(["ａｂ"]).find("xABy") == [(1, 3, "ab")]
