"""A heuristic prompt-injection score, in Chinese and English.

Each pattern carries a weight (how strongly it alone suggests an attack); a prompt's score is
``1 - prod(1 - weight)`` over the distinct patterns it matches, so one strong signal ("ignore all
previous instructions", 0.8) crosses the default threshold 0.7 alone while weak ones ("pretend",
"you are now") need company. It is a tripwire, not a classifier: it catches the copy-pasted attacks
that make up most attempts and is cheap enough to run on every prompt; paraphrases get through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stratum.governance.guard.words import normalise


@dataclass(frozen=True)
class InjectionSignal:
    name: str
    weight: float
    start: int
    end: int


@dataclass(frozen=True)
class InjectionScore:
    score: float
    signals: tuple[InjectionSignal, ...]


_PATTERNS: tuple[tuple[str, float, str], ...] = (
    # Overriding the instructions.
    (
        "ignore_instructions",
        0.8,
        r"(?:ignore|disregard|forget|skip|override|bypass)\s+(?:all\s+|any\s+|the\s+|your\s+|of\s+)*"
        r"(?:previous|prior|above|earlier|preceding|initial|original|system)?\s*"
        r"(?:instructions?|prompts?|rules|directions|guidelines|context|messages)",
    ),
    (
        "ignore_instructions_zh",
        0.8,
        r"(?:忽略|无视|忘记|忘掉|不要理会|跳过|覆盖)(?:掉)?(?:你)?(?:之前|以前|先前|上面|上述|前面|此前|所有|全部|一切|原有|原来)?"
        r"(?:的|所有的|全部的)?(?:所有|全部)?(?:指令|指示|提示词?|规则|设定|要求|限制|约束)",
    ),
    # Asking for the hidden prompt.
    (
        "system_prompt_exfiltration",
        0.75,
        r"(?:reveal|show|print|repeat|output|tell\s+me|display|leak|give\s+me|what\s+is|what\s+are|"
        r"spell\s+out)\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|original\s+|hidden\s+|secret\s+|initial\s+)*"
        r"(?:system\s+prompt|system\s+message|instructions|initial\s+prompt|hidden\s+prompt|prompt)",
    ),
    (
        "system_prompt_exfiltration_zh",
        0.75,
        r"(?:输出|打印|显示|告诉我|泄露|重复|透露|说出|给我看|展示)(?:一下)?(?:你的|你)?(?:完整的|原始的|隐藏的|全部)?"
        r"(?:系统提示词?|系统指令|系统消息|初始指令|初始提示|隐藏指令|提示词|system\s*prompt)",
    ),
    (
        "system_prompt_exfiltration_zh_object_first",
        0.75,
        r"(?:系统提示词?|system\s*prompt|系统指令|初始指令|隐藏指令).{0,8}(?:原样|完整|全部|逐字)?"
        r"(?:打印|输出|显示|告诉我|发给我|复述|贴出来)",
    ),
    ("repeat_above", 0.6, r"repeat\s+(?:the\s+|all\s+|everything\s+)*(?:words|text)?\s*above"),
    # Jailbreak personas and modes.
    # "DAN" alone is also a name: only in its jailbreak phrasings.
    (
        "dan_jailbreak",
        0.8,
        r"(?:you\s+are|you're|act\s+as|become)\s+(?:now\s+)?dan\b|\bdan\s+mode|do\s+anything\s+now|"
        r"jailbr(?:ea|o)k|越狱|你现在是dan|扮演dan",
    ),
    (
        "developer_mode",
        0.7,
        r"developer\s+mode|god\s+mode|开发者模式|上帝模式|无限制模式|sudo\s+mode",
    ),
    (
        "no_restrictions",
        0.55,
        r"(?:without|no|free\s+(?:of|from))\s+(?:any\s+)?(?:restrictions|limitations|filters|rules|"
        r"censorship|guidelines)|不受(?:任何)?(?:限制|约束|规则)|没有(?:任何)?(?:限制|约束|道德)|"
        r"不(?:需要|必)?遵守(?:任何)?(?:规则|限制|政策)",
    ),
    (
        "role_play",
        0.35,
        r"(?:pretend|imagine|act\s+as\s+if|roleplay|role-play|from\s+now\s+on)\b.{0,40}?"
        r"(?:you\s+are|you're|to\s+be)|you\s+are\s+now|假装你是|扮演|从现在开始你是|你现在是",
    ),
    ("new_instructions", 0.45, r"new\s+instructions?\s*:|新的?指令\s*[:：]|system\s*:\s|###\s*system"),
    ("chat_template_role", 0.75, r"<\|im_start\|>\s*system|<\|start_header_id\|>\s*system"),
    ("fake_delimiter", 0.4, r"<\|im_start\|>|<\|system\|>|\[/?inst\]|<</?sys>>|<\|endoftext\|>"),
)
# The text is case-folded first (``normalise``), so the patterns are lower case and case-sensitive.
_COMPILED = tuple((name, weight, re.compile(pattern)) for name, weight, pattern in _PATTERNS)


def injection_score(text: str) -> InjectionScore:
    """The score in [0, 1] with the signals that raised it (first match of each pattern)."""
    haystack = normalise(text)
    signals = []
    remaining = 1.0
    for name, weight, pattern in _COMPILED:
        match = pattern.search(haystack)
        if match is not None:
            signals.append(InjectionSignal(name, weight, match.start(), match.end()))
            remaining *= 1.0 - weight
    return InjectionScore(score=round(1.0 - remaining, 4), signals=tuple(signals))
