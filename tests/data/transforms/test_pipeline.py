from __future__ import annotations

import pytest

from stratum.data import DatasetService
from stratum.data.transforms import TransformService
from stratum.errors import InvalidRequest
from tests.data.conftest import WriteJsonl


def test_each_step_makes_a_version_with_parent_and_report(
    datasets: DatasetService, write_jsonl: WriteJsonl
) -> None:
    rows = [
        {"instruction": " 你好，请介绍一下自己 ", "input": "", "output": "我是助手。"},
        {"instruction": "你好，请介绍一下自己", "input": "", "output": "我是助手。"},
        {"instruction": "今天星期几？", "input": "", "output": "星期一。"},
        {"instruction": "Ｗｈａｔ time is it?", "input": "", "output": "Noon."},
    ]
    datasets.import_file(write_jsonl("zh.jsonl", rows), name="zh")
    made = TransformService(datasets).run(
        "zh@1", ["clean", "dedup", "split"], {"split": {"train": 0.5, "validation": 0.25, "test": 0.25}}
    )
    assert [v.ref for v in made] == ["zh@2", "zh@3", "zh@4"]
    assert [v.parent for v in made] == ["zh@1", "zh@2", "zh@3"]
    assert made[0].transform.name == "clean" and made[0].transform.params["step_version"] == 1
    assert made[1].report["dropped"] == {"exact_duplicate": 1} and made[1].row_count == 3
    assert made[2].splits == {"train": 1, "validation": 1, "test": 1}
    assert datasets.get("zh").splits == made[2].splits
    assert len(datasets.load_rows("zh@4", split="test")) == 1
    assert datasets.rows("zh@4", split="train") == datasets.load_rows(made[2], split="train")
    assert datasets.load_rows("zh@2")[3]["instruction"] == "What time is it?"
    with pytest.raises(InvalidRequest, match="unknown step 'nope'"):
        TransformService(datasets).run("zh", ["nope"])
    with pytest.raises(InvalidRequest, match="no rows"):
        TransformService(datasets).run("zh", ["length"], {"length": {"min_chars": 1000}})
    assert datasets.get("zh").number == 4
