"""``knowledge.retrieval.fuse``: the hybrid fusion variants on hand-made ranked lists.

The paraphrase case is the one plain RRF got wrong on the hard eval set: dense has a clear winner
(A), BM25 does not list it, and a mediocre dense hit (B) that BM25 ranks first gets a double RRF
score and overtakes it.
"""

from __future__ import annotations

import pytest

from stratum.knowledge.retrieval import Fusion, fuse
from stratum.knowledge.schemas import KbSettings

A, B, C, D = 0, 1, 2, 3
# Dense: A clearly first; B and C close behind each other. BM25: B first, then C; no A.
PARAPHRASE_DENSE = [(A, 0.93), (B, 0.86), (C, 0.85), (D, 0.84)]
PARAPHRASE_LEXICAL = [(B, 4.1), (C, 3.9)]
# Exact code: BM25 has one document far ahead (a rare token); dense ranks it third.
EXACT_DENSE = [(B, 0.90), (C, 0.899), (A, 0.897), (D, 0.85)]
EXACT_LEXICAL = [(A, 12.0), (D, 3.0), (C, 2.5)]


def _order(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], fusion: Fusion) -> list[int]:
    return [s.position for s in sorted(fuse(dense, lexical, fusion), key=lambda s: (-s.score, s.position))]


def test_plain_rrf_lets_a_double_listed_chunk_overtake_dense_s_clear_winner() -> None:
    plain = Fusion(method="rrf", rrf_k=60, dense_weight=0.5)
    assert _order(PARAPHRASE_DENSE, PARAPHRASE_LEXICAL, plain)[0] == B
    # Ranks hide dense's score gap: even 0.8 of the weight on dense at rrf_k=10 does not save A.
    assert _order(PARAPHRASE_DENSE, PARAPHRASE_LEXICAL, Fusion(rrf_k=10, dense_weight=0.8))[0] == B


@pytest.mark.parametrize(
    "fusion",
    [
        Fusion(method="relative", dense_weight=0.7),
        Fusion(method="gated", margin=0.01, lexical_ratio=1.5),
        KbSettings().fusion_spec(),
    ],
    ids=["relative", "gated", "default"],
)
def test_fusions_keep_dense_s_paraphrase_winner_and_bm25_s_exact_code(fusion: Fusion) -> None:
    assert _order(PARAPHRASE_DENSE, PARAPHRASE_LEXICAL, fusion)[0] == A
    assert _order(EXACT_DENSE, EXACT_LEXICAL, fusion)[0] == A


def test_relative_fusion_scores_are_the_weighted_min_max_sum() -> None:
    scored = {
        s.position: s
        for s in fuse(PARAPHRASE_DENSE, PARAPHRASE_LEXICAL, Fusion("relative", dense_weight=0.7))
    }
    span = 0.93 - 0.84
    assert scored[A].score == pytest.approx(0.7)
    assert scored[B].score == pytest.approx(0.7 * (0.86 - 0.84) / span + 0.3)
    assert scored[C].score == pytest.approx(0.7 * (0.85 - 0.84) / span + 0.0)
    assert scored[D].score == pytest.approx(0.0)
    # Both list scores ride along for the citations and the refusal threshold.
    assert scored[B].dense == 0.86 and scored[B].bm25 == 4.1 and scored[A].bm25 is None


def test_gated_fusion_keeps_bm25_s_top_hit_only_when_it_stands_out() -> None:
    gated = Fusion(method="gated", margin=0.01, lexical_ratio=1.5)
    # BM25's top hit (A, 12.0) is 4x the runner-up: it joins the gate and RRF puts it first.
    assert _order(EXACT_DENSE, EXACT_LEXICAL, gated)[0] == A
    # A near tie in BM25 (3.1 vs 3.0) is no evidence: D is outside the gate and stays behind it.
    close = [(D, 3.1), (B, 3.0)]
    assert _order(EXACT_DENSE, close, gated)[:3] == [B, C, A]


def test_one_sided_lists_and_unknown_methods() -> None:
    for method in ("rrf", "relative", "gated"):
        only_dense = _order(PARAPHRASE_DENSE, [], Fusion(method=method))
        assert only_dense == [A, B, C, D]
        assert _order([], EXACT_LEXICAL, Fusion(method=method)) == [A, D, C]
    assert fuse([], [], Fusion()) == []
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(PARAPHRASE_DENSE, [], Fusion(method="nope"))


def test_kb_settings_validate_the_fusion_knobs() -> None:
    assert KbSettings(fusion="gated", fusion_margin=0.02).fusion_spec().margin == 0.02
    with pytest.raises(ValueError):
        KbSettings(fusion="borda")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        KbSettings(dense_weight=1.5)
