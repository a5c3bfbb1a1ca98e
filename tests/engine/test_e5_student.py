"""Tests for stratum.engine.e5_student: the shipped six-layer student against its teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stratum.engine.e5_student import Student, bundled_student_path
from stratum.engine.e5_torch import TorchE5Encoder
from stratum.engine.embeddings import BUILTIN_STUDENT_NAME, BUILTIN_STUDENT_SOURCE, load_encoder
from stratum.errors import EngineError
from tests.engine.test_e5_torch import CHUNK_ZH
from tests.engine.test_embeddings import EN_FAQ, LONG_ZH, ZH_FAQ, _top1_hits

PASSAGES = [a for _, a in ZH_FAQ] + [a for _, a in EN_FAQ] + [CHUNK_ZH[:600], LONG_ZH]


@pytest.fixture(scope="module")
def teacher() -> TorchE5Encoder:
    return TorchE5Encoder(precision="fp32", query_cache=0)


@pytest.fixture(scope="module")
def student() -> TorchE5Encoder:
    encoder = TorchE5Encoder(precision="fp32", query_cache=0, distilled=True)
    encoder.load()
    return encoder


def test_shipped_file_is_six_even_layers() -> None:
    shipped = Student(bundled_student_path())
    assert shipped.layers == [0, 2, 4, 6, 8, 10]
    assert bundled_student_path().stat().st_size < 4_000_000


def test_runs_half_the_layers(student: TorchE5Encoder, teacher: TorchE5Encoder) -> None:
    teacher.load()
    assert len(student._model.blocks) == 6 and len(teacher._model.blocks) == 12  # type: ignore[union-attr]
    assert student.info.extra["model"] == BUILTIN_STUDENT_NAME
    assert student.info.extra["layers"] == 6


def test_distilled_towards_the_teacher(student: TorchE5Encoder, teacher: TorchE5Encoder) -> None:
    """The distillation is what makes six layers usable: cut layers alone land far away."""
    ours, theirs = student.encode(PASSAGES), teacher.encode(PASSAGES)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() > 0.8, cosines
    undistilled = TorchE5Encoder(precision="fp32", query_cache=0)
    model, _ = undistilled._loaded()
    model.blocks = model.blocks[::2]  # the same layers, without what was trained
    assert float((undistilled.encode(PASSAGES) * theirs).sum(axis=1).mean()) < cosines.mean() - 0.3


def test_ranks_faq_answers_like_the_teacher(student: TorchE5Encoder, teacher: TorchE5Encoder) -> None:
    for pairs in (ZH_FAQ, EN_FAQ):
        assert _top1_hits(student, pairs) >= _top1_hits(teacher, pairs) - 1


def test_vectors_are_unit_rows_and_batch_independent(student: TorchE5Encoder) -> None:
    together = student.encode(PASSAGES)
    assert together.shape == (len(PASSAGES), 384)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.stack([student.encode([p])[0] for p in PASSAGES])
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_bf16_matches_fp32(student: TorchE5Encoder) -> None:
    bf16 = TorchE5Encoder(precision="bf16", query_cache=0, distilled=True)
    cosines = (bf16.encode(PASSAGES[:4]) * student.encode(PASSAGES[:4])).sum(axis=1)
    assert cosines.min() > 0.99


def test_load_encoder_builds_the_student() -> None:
    encoder = load_encoder(BUILTIN_STUDENT_SOURCE)
    assert isinstance(encoder, TorchE5Encoder) and encoder.distilled


def test_unreadable_or_incomplete_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="cannot read"):
        Student(tmp_path / "missing.npz")
    partial = tmp_path / "partial.npz"
    np.savez(partial, keep=np.array([0, 2]))
    encoder = TorchE5Encoder(precision="fp32", distilled=True)
    with pytest.raises(EngineError, match="lack"):
        Student(partial).apply(encoder._loaded()[0])
