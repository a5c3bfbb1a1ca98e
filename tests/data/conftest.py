"""Dataset test fixtures: a migrated database, settings on a temp home, the service, file writers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratum.data import DatasetService
from stratum.settings import Settings
from stratum.storage import Database

WriteJsonl = Callable[..., Path]

CHINESE_SFT = [
    {"instruction": "把这句话翻译成英文", "input": "今天天气很好。", "output": "The weather is nice today."},
    {
        "instruction": "总结下面的段落",
        "input": "北京是中国的首都，有三千多年的历史。",
        "output": "北京是历史悠久的首都。",
    },
    {"instruction": "写一句问候语", "input": "", "output": "您好，欢迎光临！"},
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def datasets(db: Database, settings: Settings) -> DatasetService:
    return DatasetService(db, settings)


@pytest.fixture
def write_jsonl(tmp_path: Path) -> WriteJsonl:
    def write(name: str, rows: list[Any]) -> Path:
        path = tmp_path / name
        lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write
