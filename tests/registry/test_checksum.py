"""Artifact fingerprints: checksum stability and metadata read from model files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from stratum.registry.checksum import directory_checksum, read_metadata, safetensors_parameters

WriteSafetensors = Callable[[Path, dict[str, list[int]]], None]


def test_checksum_is_stable_and_independent_of_creation_order(tmp_path: Path) -> None:
    first = tmp_path / "a"
    second = tmp_path / "b"
    for root, names in (
        (first, ["x.bin", "sub/y.bin", "权重.bin"]),
        (second, ["权重.bin", "sub/y.bin", "x.bin"]),
    ):
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(name.encode() * 1000)
    digest = directory_checksum(first)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert directory_checksum(first) == digest
    assert directory_checksum(second) == digest


def test_checksum_changes_with_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"bc")
    before = directory_checksum(tmp_path)
    (tmp_path / "a").write_bytes(b"bd")
    assert directory_checksum(tmp_path) != before
    # Moving a byte from one file into the name of another must not collide.
    (tmp_path / "a").unlink()
    (tmp_path / "ab").write_bytes(b"c")
    other = tmp_path.parent / "other"
    other.mkdir()
    (other / "a").write_bytes(b"bc")
    assert directory_checksum(tmp_path) != directory_checksum(other)


def test_checksum_ignores_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"weights")
    before = directory_checksum(tmp_path)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "lock").write_text("x")
    (tmp_path / ".DS_Store").write_text("x")
    assert directory_checksum(tmp_path) == before


def test_checksum_streams_files_larger_than_a_block(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"\x01" * (3 * (1 << 20) + 7))
    assert directory_checksum(tmp_path) == directory_checksum(tmp_path)


def test_safetensors_parameters_from_header(tmp_path: Path, write_safetensors: WriteSafetensors) -> None:
    write_safetensors(tmp_path / "m.safetensors", {"w": [3, 5], "b": [5], "scalar": []})
    assert safetensors_parameters(tmp_path / "m.safetensors") == 21


def test_safetensors_parameters_on_garbage(tmp_path: Path) -> None:
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    assert safetensors_parameters(tmp_path / "bad.safetensors") is None


def test_read_metadata(model_dir: Path) -> None:
    meta = read_metadata(model_dir)
    assert meta["architecture"] == "LlamaForCausalLM"
    assert meta["model_type"] == "llama"
    assert meta["context_length"] == 256
    assert meta["parameters"] == 44
    assert meta["tokenizer"] == "PreTrainedTokenizerFast"
    assert meta["licence"] == "apache-2.0"
    assert meta["size_bytes"] > 0


def test_read_metadata_sums_shards_and_tolerates_missing_files(
    tmp_path: Path, write_safetensors: WriteSafetensors
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"n_positions": 1024}))
    write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": [2, 2]})
    write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b": [3]})
    meta = read_metadata(tmp_path)
    assert meta["parameters"] == 7
    assert meta["context_length"] == 1024
    assert "tokenizer" not in meta and "licence" not in meta and "architecture" not in meta
