"""A small bundled synonym table for augmentation (Chinese and English), written for Stratum.

Groups of interchangeable words; any member may replace any other. Kept to common, register-neutral
words whose swap does not change the meaning of an instruction. Extend it with the ``table``
parameter of the ``augment`` step (a JSON file of groups) rather than by editing this module.
"""

from __future__ import annotations

GROUPS: tuple[tuple[str, ...], ...] = (
    # Chinese
    ("告诉", "告知"),
    ("帮助", "帮忙", "协助"),
    ("请问", "想问一下"),
    ("怎么", "如何", "怎样"),
    ("为什么", "为何"),
    ("快速", "迅速"),
    ("简单", "简易"),
    ("重要", "关键"),
    ("问题", "疑问"),
    ("解释", "说明", "阐述"),
    ("总结", "概括", "归纳"),
    ("翻译", "译成"),
    ("介绍", "讲讲"),
    ("公司", "企业"),
    ("客户", "顾客"),
    ("购买", "购入"),
    ("价格", "价钱"),
    ("马上", "立刻", "立即"),
    ("非常", "十分", "特别"),
    ("今天", "今日"),
    ("明天", "明日"),
    ("可以", "能够"),
    ("需要", "须要"),
    ("开始", "着手"),
    ("结束", "完成"),
    ("使用", "运用"),
    ("检查", "核查"),
    ("修改", "更改"),
    ("漂亮", "美丽"),
    # English
    ("help", "assist", "aid"),
    ("explain", "describe", "clarify"),
    ("summarize", "summarise", "sum up"),
    ("quick", "fast", "rapid"),
    ("simple", "easy", "straightforward"),
    ("important", "crucial", "key"),
    ("problem", "issue"),
    ("question", "query"),
    ("write", "compose"),
    ("show", "display"),
    ("buy", "purchase"),
    ("price", "cost"),
    ("customer", "client"),
    ("company", "firm", "business"),
    ("start", "begin"),
    ("finish", "complete"),
    ("use", "utilize"),
    ("check", "verify"),
    ("change", "modify"),
    ("big", "large"),
    ("small", "little"),
    ("very", "really"),
    ("tell", "inform"),
    ("translate", "render"),
)
