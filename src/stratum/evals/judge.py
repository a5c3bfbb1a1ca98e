"""LLM-as-judge, pairwise and position-swapped.

A judge model sees the question and two answers and names the better one. Judges prefer whichever
answer comes first (position bias), so every pair is judged twice with the answers swapped: the
candidate wins an item only if it wins both orders, loses only if it loses both, and anything else
(including an unparseable verdict) is a tie. Per-item score for the candidate: 1, 0.5 or 0.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from stratum.engine.base import TextEngine
from stratum.evals.runner import generate_text

PROMPT = """你是公正的评审。请比较两个回答哪一个更好地回答了问题（准确、有用、简洁）。
You are an impartial judge. Decide which answer answers the question better (correct, helpful, concise).

问题 Question:
{question}

回答 A:
{first}

回答 B:
{second}

只输出一个字母：A、B，或 T 表示相当。Output one letter only: A, B, or T for a tie."""

_VERDICT = re.compile(r"\b([ABT])\b")


@dataclass(frozen=True)
class JudgedPair:
    item_id: str
    score: float  # for the candidate: 1 win, 0.5 tie / inconsistent, 0 loss
    verdicts: tuple[str | None, str | None]  # (candidate shown first, candidate shown second)


def parse_verdict(text: str) -> str | None:
    match = _VERDICT.search(text.upper())
    return match.group(1) if match else None


async def judge_pairs(
    judge: TextEngine,
    *,
    item_ids: Sequence[str],
    questions: Sequence[str],
    candidate: Sequence[str],
    baseline: Sequence[str],
    concurrency: int = 4,
) -> list[JudgedPair]:
    limit = asyncio.Semaphore(concurrency)

    async def ask(item_id: str, question: str, first: str, second: str, order: str) -> str | None:
        prompt = PROMPT.format(question=question, first=first, second=second)
        async with limit:
            text = await generate_text(
                judge, [{"role": "user", "content": prompt}], max_tokens=8, request_id=f"{item_id}-{order}"
            )
        return parse_verdict(text)

    async def one(item_id: str, question: str, cand: str, base: str) -> JudgedPair:
        forward, backward = await asyncio.gather(
            ask(item_id, question, cand, base, "ab"), ask(item_id, question, base, cand, "ba")
        )
        # Map both verdicts to the candidate's point of view.
        wins = (forward == "A") + (backward == "B")
        losses = (forward == "B") + (backward == "A")
        score = 1.0 if wins == 2 else 0.0 if losses == 2 else 0.5
        return JudgedPair(item_id=item_id, score=score, verdicts=(forward, backward))

    return list(
        await asyncio.gather(
            *(one(i, q, c, b) for i, q, c, b in zip(item_ids, questions, candidate, baseline, strict=True))
        )
    )
