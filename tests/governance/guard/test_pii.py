"""PII detectors: checksums, boundaries next to Chinese, near-misses, and the public API."""

from __future__ import annotations

import pytest

from stratum.errors import InvalidRequest
from stratum.governance.guard.pii import Entity, find_pii, id_checksum_ok, luhn_ok, mask_pii

ID = "11010519491231002X"  # the GB 11643 worked example: check character X


def test_id_checksum_and_luhn() -> None:
    assert id_checksum_ok(ID) and not id_checksum_ok(ID[:-1] + "1")
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_entities_inside_chinese_text_without_spaces() -> None:
    text = f"身份证号{ID}手机13912345678邮箱li.lei@163.com。"
    assert [(e.type, e.text) for e in find_pii(text)] == [
        ("id_card", ID),
        ("phone", "13912345678"),
        ("email", "li.lei@163.com"),
    ]


def test_offsets_point_into_the_text() -> None:
    text = f"客户 {ID} 来电 +86 138-1234-5678"
    for entity in find_pii(text):
        assert text[entity.start : entity.end] == entity.text


@pytest.mark.parametrize(
    "text",
    [
        "订单号110105194912310021已发货",  # ID-shaped, wrong check digit
        "110105194913310028",  # month 13
        "990105194912310028",  # no province 99
        f"{ID}1",  # 19 characters
        f"A{ID}",  # glued to a letter
        "价格13912345678.50元",  # a price, not a phone
        "¥13912345678",
        "编号1391234567",  # 10 digits
        "编号139123456789",  # 12 digits
        "座机010-88886666",
        "时间戳1700000000000",
        "4111111111111112",  # Luhn fails
        "订单编号20231125123456789012",  # year-led order number
        "v1.2.3.4",
        "256.1.1.1",
        "E1234567",  # 7 digits
        "admin@localhost",
    ],
)
def test_near_misses_are_not_entities(text: str) -> None:
    assert find_pii(text) == []


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("电话(+86)139-0000-1234。", "phone", "(+86)139-0000-1234"),
        ("0086 13900001234", "phone", "0086 13900001234"),
        ("卡号6222 0212 3456 7890 128", "bank_card", "6222 0212 3456 7890 128"),
        ("Visa 4111-1111-1111-1111 ok", "bank_card", "4111-1111-1111-1111"),
        ("IP：192.168.10.1。", "ipv4", "192.168.10.1"),
        ("护照号码：EA1234567", "passport", "EA1234567"),
        ("passport no. 533380006", "passport", "533380006"),
        ("邮箱13812345678@163.com", "email", "13812345678@163.com"),
    ],
)
def test_formats(text: str, kind: str, value: str) -> None:
    assert [(e.type, e.text) for e in find_pii(text)] == [(kind, value)]


def test_mask_pii_labels_and_types_filter() -> None:
    text = f"张三 {ID}，电话13912345678"
    masked, entities = mask_pii(text)
    assert masked == "张三 [ID_CARD]，电话[PHONE]"
    assert entities[0] == Entity(type="id_card", start=3, end=21, text=ID)
    only_phone, found = mask_pii(text, types={"phone"})
    assert only_phone == f"张三 {ID}，电话[PHONE]" and [e.type for e in found] == ["phone"]
    assert mask_pii("没有敏感信息") == ("没有敏感信息", [])


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest, match="unknown PII type 'ssn'"):
        find_pii("x", types=["ssn"])
