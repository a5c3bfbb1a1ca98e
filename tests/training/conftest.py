"""A tiny Llama in the registry and a small Chinese/English chat dataset for training tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratum.registry.service import RegistryService
from stratum.storage import Database
from tests.tiny import build_tiny_llama

CHAT_ROWS = [
    {
        "messages": [
            {"role": "system", "content": "你是 Stratum 的助手。"},
            {"role": "user", "content": f"问题 {i}：Stratum 是什么？"},
            {"role": "assistant", "content": f"Stratum 是一个企业大模型平台（{i}）。"},
        ]
    }
    for i in range(5)
] + [
    {"instruction": "Translate to English", "input": "你好，世界", "output": "Hello, world"},
    {"prompt": "What is LoRA?", "completion": "A low-rank adapter for fine-tuning."},
    {"instruction": "用一句话介绍检查点", "output": "检查点保存训练状态，以便中断后恢复。"},
]

PREFERENCE_ROWS = [
    {"prompt": f"问题 {i}：天空是什么颜色？", "chosen": "蓝色。", "rejected": "我不知道，随便吧。"}
    for i in range(4)
] + [{"prompt": [{"role": "user", "content": "Say hi"}], "chosen": "Hi there!", "rejected": "No."}]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", seed=3)


@pytest.fixture
def chat_data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", CHAT_ROWS)


@pytest.fixture
def preference_data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "prefs.jsonl", PREFERENCE_ROWS)


@pytest.fixture
def tiny_registered(db: Database, tiny_dir: Path) -> str:
    return RegistryService(db).add_model(name="tiny", source="local", path=tiny_dir).ref
