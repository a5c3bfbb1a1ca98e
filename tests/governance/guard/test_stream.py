"""Stream masking: whatever the chunk boundaries, the streamed text equals mask_pii of the whole."""

from __future__ import annotations

import random

import pytest

from stratum.governance.guard.pii import PII_TYPES, mask_pii
from stratum.governance.guard.stream import StreamMasker

TEXT = (
    "您好，张三的身份证号是11010519491231002X，手机 138 1234 5678，邮箱zhang.san@example.com，"
    "卡号6222 0212 3456 7890 128。护照号码：E12345678。Call +86-139-0000-1234 or 10.0.0.8 now 13912345678"
)


def _stream(masker: StreamMasker, pieces: list[str]) -> str:
    return "".join(masker.feed(p) for p in pieces) + masker.finish()


@pytest.mark.parametrize("seed", range(40))
def test_any_split_gives_the_same_masked_text(seed: int) -> None:
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(TEXT):
        k = rng.randint(1, 6)
        pieces.append(TEXT[i : i + k])
        i += k
    masker = StreamMasker(types=PII_TYPES)
    assert _stream(masker, pieces) == mask_pii(TEXT)[0]
    assert [e.text for e in masker.entities] == [e.text for e in mask_pii(TEXT)[1]]


def test_one_character_per_chunk() -> None:
    masker = StreamMasker(types={"id_card", "phone"})
    assert _stream(masker, list("身份证11010519491231002X，好的")) == "身份证[ID_CARD]，好的"


def test_holds_back_only_a_possible_entity() -> None:
    masker = StreamMasker(types={"id_card", "phone"})
    assert masker.feed("你好，我的号码是138") == "你好，我的号码是"
    assert masker.feed("12345678") == ""  # complete, but a 12th digit would make it a non-phone
    assert masker.feed("。谢谢") == "[PHONE]。谢谢"
    # Plain words are not held when emails are not masked.
    assert StreamMasker(types={"phone"}).feed("hello world") == "hello world"


def test_a_blocked_type_stops_the_stream_before_it() -> None:
    masker = StreamMasker(types={"phone"}, blocked={"id_card"})
    assert masker.feed("电话13912345678，证件1101051949") == "电话[PHONE]，证件"
    assert masker.feed("1231002X 以后的内容") == ""
    assert masker.hit_block is not None and masker.hit_block.type == "id_card"
    assert masker.feed("more") == "" and masker.finish() == ""


def test_nothing_watched_passes_through() -> None:
    masker = StreamMasker(types=())
    assert masker.feed("13912345678") == "13912345678"
