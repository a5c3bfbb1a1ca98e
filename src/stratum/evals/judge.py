"""LLM-as-judge, pairwise and position-swapped.

A judge model sees the question and two answers and names the better one. Judges prefer whichever
answer comes first (position bias), so every pair is judged twice with the answers swapped: the
candidate wins an item only if it wins both orders, loses only if it loses both, and anything else
(including an unparseable verdict) is a tie. Per-item score for the candidate: 1, 0.5 or 0.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from stratum.engine.base import TextEngine
from stratum.errors import InvalidRequest
from stratum.evals.runner import ItemResult, RunResult, generate_text
from stratum.evals.suites import Suite

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


def question_text(messages: Sequence[dict[str, object]]) -> str:
    """What the judge is shown as the question: the conversation before the answer."""
    if len(messages) == 1:
        return str(messages[0].get("content", ""))
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages)


async def judge_suite(
    judge: TextEngine,
    suite: Suite,
    *,
    candidate: RunResult,
    baseline: RunResult,
    concurrency: int = 4,
) -> RunResult:
    """A run whose per-item ``judge`` score is the candidate's pairwise score against the baseline.

    The output kept per item is the candidate's answer; ``verdicts`` go in the item's error field
    only when the judge gave no parseable verdict (so a reader sees why an item tied).
    """
    started = time.perf_counter()
    cand = {item.item_id: item.output for item in candidate.items}
    base = {item.item_id: item.output for item in baseline.items}
    missing = [item.id for item in suite.items if item.id not in cand or item.id not in base]
    if missing:
        raise InvalidRequest(f"both runs must answer every item; missing: {', '.join(missing[:5])}")
    ids = [item.id for item in suite.items]
    pairs = await judge_pairs(
        judge,
        item_ids=ids,
        questions=[question_text(item.messages) for item in suite.items],
        candidate=[cand[i] for i in ids],
        baseline=[base[i] for i in ids],
        concurrency=concurrency,
    )
    items = [
        ItemResult(
            pair.item_id,
            cand[pair.item_id],
            {"judge": pair.score, "win": float(pair.score == 1.0), "loss": float(pair.score == 0.0)},
            error=None if None not in pair.verdicts else f"unparseable verdict(s): {pair.verdicts}",
        )
        for pair in pairs
    ]
    return RunResult(items=items, seconds=time.perf_counter() - started)
