"""A gateway on a temp store with fake engines: fast, deterministic tests of the OpenAI surface."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stratum.engine.base import ModelInfo
from stratum.engine.fake import FakeEngine
from stratum.gateway.app import create_app
from stratum.registry.schemas import ModelVersionPublic
from stratum.settings import Settings


class FakeEncoder:
    """Hashes characters into a small vector: enough to test the wire format, not quality."""

    dimensions = 8
    info = ModelInfo(architecture="FakeEncoder")

    def encode(self, texts: list[str], *, kind: str = "passage") -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for char in text or " ":
                out[row, ord(char) % self.dimensions] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def count_tokens(self, texts: list[str], *, kind: str = "passage") -> list[int]:
        return [len(t) for t in texts]


@dataclass
class Gateway:
    client: TestClient
    key: str
    engines: dict[str, FakeEngine] = field(default_factory=dict)
    replies: list[str] = field(default_factory=list)
    delay_s: float = 0.0

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.client.app.state.stratum  # type: ignore[attr-defined]

    def add_model(self, name: str, *, kind: str = "chat") -> None:
        self.state.registry.add_model(
            name=name, kind=kind, source="upstream", upstream_url="http://127.0.0.1:9/v1"
        )


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with running_gateway(tmp_path / "home") as holder:
        yield holder


@contextmanager
def running_gateway(home: Path) -> Iterator[Gateway]:
    """A gateway on a fresh store under ``home`` (also for module-scoped fixtures of read-only tests)."""
    settings = Settings(home=home, demo_model=False, embeddings_model=False)
    holder = Gateway(client=None, key="")  # type: ignore[arg-type]

    def factory(version: ModelVersionPublic):  # type: ignore[no-untyped-def]
        if version.kind == "embedding":
            return FakeEncoder()
        engine = FakeEngine(list(holder.replies), delay_s=holder.delay_s)
        holder.engines[version.name] = engine
        return engine

    app = create_app(settings, engine_factory=factory)
    with TestClient(app) as client:
        holder.client = client
        holder.key, _ = holder.state.keys.create_key(name="test")
        holder.add_model("fake")
        holder.add_model("fake-embed", kind="embedding")
        yield holder
