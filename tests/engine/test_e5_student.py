"""Tests for stratum.engine.e5_student: the shipped six- and four-layer students against their teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stratum.engine.e5_student import STUDENT_FILES, Student, bundled_student_path
from stratum.engine.e5_torch import TorchE5Encoder, resolve_precision
from stratum.engine.embeddings import BUILTIN_ENCODERS, load_encoder
from stratum.errors import EngineError
from tests.engine.test_e5_torch import CHUNK_ZH
from tests.engine.test_embeddings import EN_FAQ, LONG_ZH, ZH_FAQ, _top1_hits

PASSAGES = [a for _, a in ZH_FAQ] + [a for _, a in EN_FAQ] + [CHUNK_ZH[:600], LONG_ZH]
# Each student: its registry name and the teacher layers it keeps (its initialisation).
SHIPPED = {
    "e5-6l": ("multilingual-e5-small-6l", [0, 2, 4, 6, 8, 10]),
    "e5-4l": ("multilingual-e5-small-4l", [0, 4, 8, 11]),
}


@pytest.fixture(scope="module")
def teacher() -> TorchE5Encoder:
    return TorchE5Encoder(precision="fp32", query_cache=0)


@pytest.fixture(scope="module", params=list(SHIPPED))
def student_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def student(student_name: str) -> TorchE5Encoder:
    encoder = TorchE5Encoder(precision="fp32", query_cache=0, student=student_name)
    encoder.load()
    return encoder


def test_every_bundled_student_is_shipped_and_registered() -> None:
    assert set(STUDENT_FILES) == set(SHIPPED)
    for name, (model, layers) in SHIPPED.items():
        assert Student(bundled_student_path(name)).layers == layers
        assert bundled_student_path(name).stat().st_size < 8_000_000
        assert BUILTIN_ENCODERS[model] == f"builtin:{name}"
    with pytest.raises(EngineError, match="no bundled e5 student 'e5-3l'"):
        bundled_student_path("e5-3l")


def test_runs_fewer_layers(student_name: str, student: TorchE5Encoder, teacher: TorchE5Encoder) -> None:
    teacher.load()
    model, layers = SHIPPED[student_name]
    assert len(student._model.blocks) == len(layers) and len(teacher._model.blocks) == 12  # type: ignore[union-attr]
    assert student.info.extra["model"] == model
    assert student.info.extra["layers"] == len(layers)
    assert student.info.parameters < teacher.info.parameters - (12 - len(layers)) * 1_700_000


def test_distilled_towards_the_teacher(
    student_name: str, student: TorchE5Encoder, teacher: TorchE5Encoder
) -> None:
    """The distillation is what makes fewer layers usable: cut layers alone land further away."""
    ours, theirs = student.encode(PASSAGES), teacher.encode(PASSAGES)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() > 0.85, cosines
    undistilled = TorchE5Encoder(precision="fp32", query_cache=0)
    model, _ = undistilled._loaded()
    # The same layers, without what was trained.
    model.blocks = torch.nn.ModuleList(model.blocks[i] for i in SHIPPED[student_name][1])
    assert float((undistilled.encode(PASSAGES) * theirs).sum(axis=1).mean()) < cosines.mean() - 0.05


def test_ranks_faq_answers_like_the_teacher(student: TorchE5Encoder, teacher: TorchE5Encoder) -> None:
    for pairs in (ZH_FAQ, EN_FAQ):
        assert _top1_hits(student, pairs) >= _top1_hits(teacher, pairs) - 1


def test_vectors_are_unit_rows_and_batch_independent(student: TorchE5Encoder) -> None:
    together = student.encode(PASSAGES)
    assert together.shape == (len(PASSAGES), 384)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.stack([student.encode([p])[0] for p in PASSAGES])
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_bf16_matches_fp32(student_name: str, student: TorchE5Encoder) -> None:
    if student_name != "e5-6l" and resolve_precision("auto") != "bf16":
        pytest.skip("emulated bf16 is slow: one student checks it on a CPU without native bf16")
    bf16 = TorchE5Encoder(precision="bf16", query_cache=0, student=student_name)
    cosines = (bf16.encode(PASSAGES[:4]) * student.encode(PASSAGES[:4])).sum(axis=1)
    assert cosines.min() > 0.99


def test_load_encoder_builds_the_student(student_name: str) -> None:
    encoder = load_encoder(f"builtin:{student_name}")
    assert isinstance(encoder, TorchE5Encoder) and encoder.student is not None
    assert encoder.info.extra["model"] == SHIPPED[student_name][0]


def test_unreadable_or_incomplete_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="cannot read"):
        Student(tmp_path / "missing.npz")
    partial = tmp_path / "partial.npz"
    np.savez(partial, keep=np.array([0, 2]))
    encoder = TorchE5Encoder(precision="fp32", student="e5-6l")
    with pytest.raises(EngineError, match="lack"):
        Student(partial).apply(encoder._loaded()[0])


def test_which_model_embeds_queries(
    student_name: str, student: TorchE5Encoder, teacher: TorchE5Encoder
) -> None:
    """The four-layer student was distilled for passages only: its queries run through all twelve
    layers (exactly the teacher's vectors). The six-layer one embeds both sides itself."""
    queries = ["年假可以分几次休？", "How do I reset my password?"]
    same = np.abs(student.encode(queries, kind="query") - teacher.encode(queries, kind="query")).max() < 1e-5
    passages_same = np.abs(student.encode(PASSAGES[:2]) - teacher.encode(PASSAGES[:2])).max() < 1e-3
    assert not passages_same
    teacher_queries = student_name == "e5-4l"
    assert same == teacher_queries
    assert student.info.extra["query_layers"] == (12 if teacher_queries else len(SHIPPED[student_name][1]))
