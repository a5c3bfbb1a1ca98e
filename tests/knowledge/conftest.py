"""Knowledge fixtures: a project in a migrated store, a fast deterministic encoder, sample files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from stratum.engine.base import ModelInfo
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tenancy import TenancyService
from stratum.knowledge.schemas import KbCreate, KbPublic, KbSettings
from stratum.knowledge.service import KnowledgeService
from stratum.knowledge.text import lexical_tokens
from stratum.storage import Database

CORPUS = Path(__file__).parent / "corpus"


class HashEncoder:
    """Bag of lexical tokens hashed into 64 dimensions: deterministic, fast, and related texts
    (sharing words) get similar vectors, so retrieval tests can fail for real."""

    dimensions = 64
    info = ModelInfo(architecture="HashEncoder")

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def encode(self, texts: list[str], *, kind: str = "passage") -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in lexical_tokens(text) or ["\u2205"]:
                out[row, int.from_bytes(token.encode()[:4].ljust(4, b"\0"), "little") % self.dimensions] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def count_tokens(self, texts: list[str], *, kind: str = "passage") -> list[int]:
        return [len(t) for t in texts]


@pytest.fixture
def project(db: Database) -> str:
    tenancy = TenancyService(db)
    tenancy.create_org(OrgCreate(name="acme"))
    tenancy.create_project("acme", ProjectCreate(name="bot"))
    return "acme/bot"


@pytest.fixture
def service(db: Database, project: str) -> KnowledgeService:
    return KnowledgeService(db)


@pytest.fixture
def encoder() -> HashEncoder:
    return HashEncoder()


@pytest.fixture
def kb(service: KnowledgeService, project: str) -> KbPublic:
    settings = KbSettings(embedding_model="hash", chunk_size=120, chunk_overlap=16, refusal_threshold=0.3)
    return service.create(KbCreate(name="docs", settings=settings), project=project)


def require_ocr() -> None:
    """Skip without Tesseract and pdftoppm — or fail, under ``make test`` (``STRATUM_TEST_OCR=1``),
    which installs them: there a missing tool must not pass as a skipped test."""
    missing = [tool for tool in ("tesseract", "pdftoppm") if shutil.which(tool) is None]
    if missing:
        packages = "tesseract-ocr tesseract-ocr-chi-sim poppler-utils"
        message = f"{', '.join(missing)} not installed (apt-get install {packages})"
        if os.environ.get("STRATUM_TEST_OCR") == "1":
            pytest.fail(message)
        pytest.skip(message)
