from __future__ import annotations

import pytest

from stratum.data.transforms.base import merged_params
from stratum.data.transforms.pii import STEP
from stratum.errors import InvalidRequest

ROWS = [
    {
        "messages": [
            {"role": "user", "content": "我的手机号是13912345678，邮箱 zhang.san@example.com，帮我查订单"},
            {"role": "assistant", "content": "好的，已为您查询。"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "订单号 20240101123456 到哪了？"},
            {"role": "assistant", "content": "已发货。"},
        ]
    },
]


def test_mask_scrubs_every_text_and_reports_counts_only() -> None:
    out, report = STEP.apply(ROWS, "chat", merged_params(STEP, {}))
    assert out[0]["messages"][0]["content"] == "我的手机号是[PHONE]，邮箱 [EMAIL]，帮我查订单"
    assert out[1] == ROWS[1]  # an order number is not a phone or an ID
    assert report.changed == 1 and report.details["entities"] == {"phone": 1, "email": 1}
    assert "13912345678" not in report.model_dump_json()


def test_drop_and_types() -> None:
    out, report = STEP.apply(ROWS, "chat", merged_params(STEP, {"action": "drop", "types": ["email"]}))
    assert out == [ROWS[1]] and report.dropped == {"pii": 1}
    assert "13912345678" not in report.model_dump_json() and "[EMAIL]" in report.examples[0].text
    with pytest.raises(InvalidRequest, match="unknown PII type"):
        STEP.apply(ROWS, "chat", merged_params(STEP, {"types": ["dna"]}))
