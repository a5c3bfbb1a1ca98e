"""Fingerprinting a model directory: a content checksum and the metadata its files declare.

Both only read files: no weights are loaded, so registering a multi-GB model costs one streaming
pass for the checksum and a few small JSON reads.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

# Read files in 1 MiB blocks: large enough for hashlib throughput, small enough to keep memory flat.
_BLOCK = 1 << 20
# A safetensors header is JSON describing each tensor; real ones are well under a few MiB. Anything
# larger is not a header we trust enough to parse.
_MAX_SAFETENSORS_HEADER = 100 << 20
# Keys that hold the context length across the config.json dialects of common architectures.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def _artifact_files(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root`` as (relative POSIX path, path), sorted by relative path.

    Hidden entries (``.git``, ``.cache/huggingface`` lock files, editor droppings) are skipped: they
    are not part of the model and would make the checksum change without the model changing.
    """
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        files.append((rel.as_posix(), path))
    files.sort(key=lambda item: item[0])
    return files


def directory_checksum(root: Path) -> str:
    """sha256 hex digest over the sorted relative paths and bytes of every file under ``root``.

    Each file contributes its path, a NUL and its size before its bytes, so moving bytes between
    files or renaming a file always changes the digest. Symlinks are followed (Hugging Face snapshot
    directories are symlinks into a blob store).
    """
    digest = hashlib.sha256()
    for rel, path in _artifact_files(root):
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(struct.pack("<Q", path.stat().st_size))
        with path.open("rb") as stream:
            while block := stream.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def safetensors_parameters(path: Path) -> int | None:
    """Number of parameters in one .safetensors file, from its JSON header only.

    Layout: 8-byte little-endian header length, then the header: ``{name: {"shape": [...]}}`` plus an
    optional ``__metadata__`` entry.
    """
    try:
        with path.open("rb") as stream:
            (size,) = struct.unpack("<Q", stream.read(8))
            if size > _MAX_SAFETENSORS_HEADER:
                return None
            header = json.loads(stream.read(size))
    except (OSError, ValueError, struct.error):
        return None
    if not isinstance(header, dict):
        return None
    total = 0
    for name, tensor in header.items():
        if name == "__metadata__" or not isinstance(tensor, dict):
            continue
        shape = tensor.get("shape")
        if not isinstance(shape, list):
            return None
        total += math.prod(int(dim) for dim in shape)
    return total


def _licence_from_readme(path: Path) -> str | None:
    """The ``license:`` field of a Hugging Face model card's YAML front matter, if any."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0].strip() != "---":
        return None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip().strip("'\"")
    return None


def read_metadata(root: Path) -> dict[str, Any]:
    """What the directory's files say about the model; keys whose value is unknown are left out.

    Keys: architecture, model_type, context_length, parameters (approximate: a tied embedding counts
    once per stored copy), tokenizer, licence, size_bytes.
    """
    config = _read_json(root / "config.json") or {}
    meta: dict[str, Any] = {}
    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures:
        meta["architecture"] = str(architectures[0])
    if isinstance(config.get("model_type"), str):
        meta["model_type"] = config["model_type"]
    for key in _CONTEXT_KEYS:
        if isinstance(config.get(key), int):
            meta["context_length"] = config[key]
            break

    shards = sorted(root.glob("*.safetensors"))
    counts = [safetensors_parameters(shard) for shard in shards]
    if shards and all(count is not None for count in counts):
        meta["parameters"] = sum(count for count in counts if count is not None)

    tokenizer_config = _read_json(root / "tokenizer_config.json") or {}
    if isinstance(tokenizer_config.get("tokenizer_class"), str):
        meta["tokenizer"] = tokenizer_config["tokenizer_class"]

    licence = config.get("license") or config.get("licence") or _licence_from_readme(root / "README.md")
    if isinstance(licence, str) and licence:
        meta["licence"] = licence

    meta["size_bytes"] = sum(path.stat().st_size for _, path in _artifact_files(root))
    return meta
