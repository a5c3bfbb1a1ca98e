import json
from pathlib import Path

import pytest

from stratum.errors import InvalidRequest
from stratum.evals.suites import load_suite


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_generation_suite_from_prompts_and_messages(tmp_path: Path) -> None:
    suite = load_suite(
        write(
            tmp_path / "qa.jsonl",
            [
                {"id": "q1", "prompt": "中国的首都是哪里？", "answer": "北京"},
                {"messages": [{"role": "user", "content": "1+1=?"}], "references": ["2", "二"]},
            ],
        )
    )
    assert suite.kind == "generation" and suite.name == "qa"
    assert suite.items[0].messages == [{"role": "user", "content": "中国的首都是哪里？"}]
    assert suite.items[1].id == "2" and suite.items[1].references == ("2", "二")


def test_multiple_choice_answers_by_letter_or_index(tmp_path: Path) -> None:
    suite = load_suite(
        write(
            tmp_path / "mc.jsonl",
            [
                {"question": "哪个是水果？", "choices": ["白菜", "苹果"], "answer": "B"},
                {"question": "Which is a colour?", "choices": ["red", "dog", "run"], "answer": 0},
            ],
        )
    )
    assert suite.kind == "multiple_choice"
    assert [i.answer_index for i in suite.items] == [1, 0]
    assert "A. 白菜" in suite.items[0].messages[0]["content"]


def test_digest_changes_with_the_items(tmp_path: Path) -> None:
    a = load_suite(write(tmp_path / "a.jsonl", [{"prompt": "你好", "answer": "你好"}]))
    b = load_suite(write(tmp_path / "b.jsonl", [{"prompt": "你好", "answer": "您好"}]))
    assert a.digest != b.digest
    assert a.digest == load_suite(tmp_path / "a.jsonl").digest


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "缺少答案"}], "line 1: field 'reference'"),
        ([{"prompt": "a", "answer": "b"}, {"text": "一段文本"}], "line 2: a perplexity item"),
        ([{"question": "q", "choices": ["x", "y"], "answer": "C"}], "line 1: field 'answer'"),
        ([{"id": "x", "prompt": "a", "answer": "b"}, {"id": "x", "prompt": "c", "answer": "d"}], "unique"),
    ],
)
def test_bad_items_name_the_line_and_field(tmp_path: Path, rows: list[object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        load_suite(write(tmp_path / "bad.jsonl", rows))


def test_broken_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "a", "answer": "b"}\n{not json\n', encoding="utf-8")
    with pytest.raises(InvalidRequest, match="line 2: not JSON"):
        load_suite(path)
