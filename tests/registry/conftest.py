"""Registry fixtures: a small Hugging Face style model directory, built by hand (no weights to download)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

WriteSafetensors = Callable[[Path, dict[str, list[int]]], None]


def write_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A valid .safetensors file of zeros (float32), written by hand: header length, header, data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def _make_model_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(
        json.dumps(
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "max_position_embeddings": 256}
        )
    )
    (root / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    (root / "README.md").write_text(
        "---\nlicense: apache-2.0\nlanguage: zh\n---\n# 小模型\n", encoding="utf-8"
    )
    write_safetensors(root / "model.safetensors", {"embed": [10, 4], "head": [4]})
    return root


@pytest.fixture(name="write_safetensors")
def _write_safetensors_fixture() -> WriteSafetensors:
    return write_safetensors


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """config.json, tokenizer_config.json, a model card and a 44-parameter safetensors file."""
    return _make_model_dir(tmp_path / "tiny")
