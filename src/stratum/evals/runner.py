"""Answer a suite's items with a served engine and score them.

Items are submitted concurrently (up to ``concurrency``) so the embedded engine's continuous batching
does the work of a batch; decoding is greedy so a run is reproducible and two versions are compared
on their best-guess answers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stratum.engine.base import GenerationRequest, SamplingParams, TextEngine
from stratum.errors import InvalidRequest, StratumError
from stratum.evals.metrics import METRICS
from stratum.evals.suites import LETTERS, Item, Suite

DEFAULT_METRICS = {"generation": ("exact_match", "f1", "rouge_l", "chrf"), "multiple_choice": ("accuracy",)}


@dataclass
class ItemResult:
    item_id: str
    output: str
    scores: dict[str, float]
    error: str | None = None


@dataclass
class RunResult:
    items: list[ItemResult] = field(default_factory=list)
    seconds: float = 0.0

    def means(self) -> dict[str, float]:
        names = {name for item in self.items for name in item.scores}
        return {
            name: sum(item.scores.get(name, 0.0) for item in self.items) / len(self.items)
            for name in sorted(names)
        }


async def run_suite(
    engine: TextEngine,
    suite: Suite,
    *,
    metrics: Sequence[str] | None = None,
    max_tokens: int = 128,
    concurrency: int = 8,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Generate an answer per item (greedy) and score it; a failed item scores 0 and keeps its error."""
    if suite.kind == "perplexity":
        raise InvalidRequest("a perplexity suite runs on a local model's weights: use evals.perplexity")
    names = tuple(metrics or DEFAULT_METRICS[suite.kind])
    unknown = [n for n in names if n not in METRICS and n != "accuracy"]
    if unknown:
        raise InvalidRequest(
            f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join([*METRICS, 'accuracy'])}",
            param="metrics",
        )
    limit = asyncio.Semaphore(concurrency)
    done = 0
    started = time.perf_counter()

    async def one(item: Item) -> ItemResult:
        nonlocal done
        async with limit:
            try:
                output = await generate_text(engine, item.messages, max_tokens=max_tokens, request_id=item.id)
                result = ItemResult(item.id, output, _score(suite, item, output, names))
            except StratumError as error:
                result = ItemResult(item.id, "", dict.fromkeys(names, 0.0), error=error.message)
        done += 1
        if on_progress is not None:
            on_progress(done, len(suite.items))
        return result

    items = await asyncio.gather(*(one(item) for item in suite.items))
    return RunResult(items=list(items), seconds=time.perf_counter() - started)


async def generate_text(
    engine: TextEngine, messages: Sequence[dict[str, object]], *, max_tokens: int, request_id: str
) -> str:
    request = GenerationRequest(
        request_id=f"eval-{request_id}",
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        messages=list(messages),
    )
    parts = [chunk.text async for chunk in engine.generate(request)]
    return "".join(parts)


def _score(suite: Suite, item: Item, output: str, names: Sequence[str]) -> dict[str, float]:
    if suite.kind == "multiple_choice":
        picked = parse_choice(output, len(item.choices))
        return {"accuracy": float(picked == item.answer_index)}
    return {name: METRICS[name](output, item.references) for name in names}


_LETTER = re.compile(r"(?<![A-Za-z])([A-J])(?![a-z])")


def parse_choice(output: str, count: int) -> int | None:
    """The first option letter the model wrote (``B``, ``(B)``, ``答案：B``, ``B. …``), if any."""
    for match in _LETTER.finditer(output.upper() if len(output.strip()) == 1 else output):
        letter = match.group(1)
        if letter in LETTERS[:count]:
            return LETTERS.index(letter)
    return None
