"""Retrieval evaluation: hit@k, MRR, answer-string recall and latency over a question set.

A question file is JSON lines: ``{"question": …, "expected_source": "file.md", "answers": ["…"]}``
(``expected_source`` and ``answers`` are each optional, at least one is needed). Per question:

* hit@k — the expected source is among the top-k hits' sources;
* reciprocal rank — 1 / rank of the first hit from the expected source (0 if none in top k);
* answer recall — the fraction of answer strings found in the top-k hits' text (whitespace
  ignored), i.e. whether the passages a generator would see contain the facts.

``compare`` runs several configurations (retrieval mode, MMR, or another KB — e.g. the same
documents ingested with another chunk size) over the same questions, side by side.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

from stratum.errors import InvalidRequest
from stratum.knowledge.schemas import SearchRequest, SearchResult


class Question(BaseModel):
    question: str = Field(min_length=1)
    expected_source: str | None = None
    answers: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_check(self) -> Question:
        if not self.expected_source and not self.answers:
            raise ValueError("a question needs expected_source and/or answers")
        return self


def load_questions(path: Path) -> list[Question]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            questions.append(Question.model_validate_json(line))
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise InvalidRequest(f"{path.name} line {number}: {problem}", param="questions") from exc
    if not questions:
        raise InvalidRequest(f"{path.name} holds no questions", param="questions")
    return questions


@dataclass
class EvalReport:
    name: str
    k: int
    questions: int = 0
    hit_at_k: float = 0.0
    mrr: float = 0.0
    answer_recall: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    misses: list[str] = field(default_factory=list)

    def row(self) -> dict[str, object]:
        return {
            "config": self.name,
            "questions": self.questions,
            f"hit@{self.k}": round(self.hit_at_k, 3),
            "mrr": round(self.mrr, 3),
            "answer_recall": round(self.answer_recall, 3),
            "p50_ms": round(self.latency_p50_ms, 2),
            "p95_ms": round(self.latency_p95_ms, 2),
        }


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def evaluate(
    name: str, questions: list[Question], search: Callable[[SearchRequest], SearchResult], *, k: int
) -> EvalReport:
    report = EvalReport(name=name, k=k, questions=len(questions))
    hits = rr = recall = 0.0
    latencies = []
    for q in questions:
        started = time.perf_counter()
        result = search(SearchRequest(query=q.question, k=k))
        latencies.append((time.perf_counter() - started) * 1000)
        sources = [h.source for h in result.hits]
        if q.expected_source:
            if q.expected_source in sources:
                hits += 1
                rr += 1.0 / (sources.index(q.expected_source) + 1)
            else:
                report.misses.append(q.question)
        if q.answers:
            text = _squash(" ".join(h.text for h in result.hits))
            recall += sum(_squash(a) in text for a in q.answers) / len(q.answers)
    with_source = sum(1 for q in questions if q.expected_source) or 1
    with_answers = sum(1 for q in questions if q.answers) or 1
    report.hit_at_k = hits / with_source
    report.mrr = rr / with_source
    report.answer_recall = recall / with_answers
    latencies.sort()
    report.latency_p50_ms = statistics.median(latencies)
    report.latency_p95_ms = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    return report


def dump_reports(reports: list[EvalReport]) -> str:
    return json.dumps([{**r.row(), "misses": r.misses} for r in reports], ensure_ascii=False, indent=2)
