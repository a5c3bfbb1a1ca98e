"""Compression runs: parent version in, a new registry version out, measured against its parent.

Serves: ``stratum compress quantize|prune|distill|onnx`` (and the jobs that run them). The new
version records ``variant``, its ``parent`` ref, the method's parameters, both measurements and the
deltas in its metadata, so ``stratum models show`` tells what the compression cost and saved.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratum.errors import InvalidRequest
from stratum.registry.lineage import LineageService
from stratum.registry.schemas import ModelVersionPublic
from stratum.registry.service import RegistryService
from stratum.training.compression.measure import Measures, deltas, measure

# A short fixed prompt for the speed measurement: the same for parent and child.
SPEED_PROMPT = "Stratum 是一个企业大模型平台。It serves models and"


@dataclass(frozen=True)
class CompressionResult:
    version: ModelVersionPublic
    before: Measures | None
    after: Measures | None
    deltas: dict[str, float]
    extra: dict[str, Any]


class CompressionService:
    def __init__(
        self, registry: RegistryService, artifacts_dir: Path, *, lineage: LineageService | None = None
    ) -> None:
        """``lineage``: where the parent → child edge is recorded (``stratum lineage`` shows it)."""
        self._registry = registry
        self._artifacts = artifacts_dir
        self._lineage = lineage

    def parent(self, ref: str) -> tuple[ModelVersionPublic, Path]:
        version = self._registry.resolve(ref)
        if version.source == "upstream" or version.kind != "chat" or not version.artifact_uri:
            raise InvalidRequest(f"{version.ref} has no local weights to compress", param="model")
        return version, Path(version.artifact_uri)

    def run(
        self,
        *,
        parent_ref: str,
        name: str,
        variant: str,
        method: str,
        params: dict[str, Any],
        texts: list[str],
        produce: Callable[[Path, Path], Any],
        measured: bool = True,
        actor: str = "system",
    ) -> CompressionResult:
        """``produce(parent_dir, target_dir)`` writes the child and returns its model (or extra info)."""
        from transformers import AutoTokenizer

        from stratum.engine.weights import load_causal_lm

        if not texts:
            raise InvalidRequest("held-out texts are needed to measure quality", param="texts")
        parent, source = self.parent(parent_ref)
        target = self._artifacts / "models" / f"{name}-{uuid.uuid4().hex[:8]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            produced = produce(source, target)
            before = after = None
            change: dict[str, float] = {}
            extra: dict[str, Any] = {}
            if measured:
                tokenizer = AutoTokenizer.from_pretrained(source)
                before = measure(load_causal_lm(source), tokenizer, source, texts, prompt=SPEED_PROMPT)
                after = measure(produced, tokenizer, target, texts, prompt=SPEED_PROMPT)
                change = deltas(before, after)
            else:
                extra = dict(produced)
            metadata = {
                "variant": variant,
                "parent": parent.ref,
                "compression": {"method": method, "params": params},
                "measures": {
                    "before": before.as_dict() if before else None,
                    "after": after.as_dict() if after else None,
                    "deltas": change,
                    **extra,
                },
            }
            json.dumps(metadata)  # fail before registering if something is not serialisable
            version = self._registry.add_model(
                name=name,
                source="local",
                path=target,
                metadata=metadata,
                description=f"{method} of {parent.ref}",
                actor=actor,
            )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        if self._lineage is not None:
            self._lineage.add_edge(
                source=("model", parent.ref),
                target=("model", version.ref),
                relation="compressed",
                actor=actor,
                metadata={"variant": variant, "method": method},
            )
        return CompressionResult(version=version, before=before, after=after, deltas=change, extra=extra)
