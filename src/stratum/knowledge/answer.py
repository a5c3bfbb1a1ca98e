"""Grounded answering: retrieved chunks → a prompt with numbered sources, citations, refusals.

Used by the gateway's chat route (``model: "kb/<name>"`` or ``knowledge_bases: [...]``):

1. retrieve from each KB with its own settings, merge the hits by fused score, keep ``top_k``;
2. refuse — say that the knowledge base has no answer instead of letting a model invent one —
   when the best hit's cosine similarity to the question is under the KB's
   ``refusal_threshold``;
3. otherwise either build grounded messages (a system message listing the sources as ``[1]``,
   ``[2]``, … and asking for those markers inline) for a generator, or, in extractive mode (no
   generator configured), answer with the best passages themselves, each with its marker.

Citations (source, page, heading path, chunk id, score, KB) go back in the response's
``citations`` extension field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stratum.knowledge.schemas import ChunkHit, KbPublic

_CJK = re.compile(r"[\u4e00-\u9fff]")
# Characters of each passage shown in an extractive answer (the whole chunk is in the citation).
EXTRACT_CHARS = 400


@dataclass
class Grounding:
    question: str
    hits: list[tuple[KbPublic, ChunkHit]]
    refused: bool = False
    citations: list[dict[str, Any]] = field(default_factory=list)


def chinese(text: str) -> bool:
    return bool(_CJK.search(text))


def ground(question: str, results: list[tuple[KbPublic, list[ChunkHit]]]) -> Grounding:
    merged = [(kb, hit) for kb, hits in results for hit in hits]
    merged.sort(key=lambda pair: -pair[1].score)
    top_k = max((kb.settings.top_k for kb, _ in results), default=5)
    merged = merged[:top_k]
    best = max((hit.dense_score for _, hit in merged if hit.dense_score is not None), default=None)
    threshold = min((kb.settings.refusal_threshold for kb, _ in results), default=0.0)
    if not merged:
        refused = True
    elif best is None:  # BM25-only KBs: a lexical match is the only relevance signal there is
        refused = False
    else:
        refused = best < threshold
    grounding = Grounding(question=question, hits=[] if refused else merged, refused=refused)
    grounding.citations = [
        {
            "index": i,
            "kb": kb.name,
            "source": hit.source,
            "page": hit.page,
            "heading_path": hit.heading_path,
            "chunk_id": hit.chunk_id,
            "score": hit.score,
            "similarity": hit.dense_score,
        }
        for i, (kb, hit) in enumerate(grounding.hits, start=1)
    ]
    return grounding


def refusal_text(question: str) -> str:
    if chinese(question):
        return "抱歉，知识库中没有找到与这个问题相关的内容，无法根据资料回答。"
    return (
        "Sorry, the knowledge base has nothing relevant to this question, "
        "so I cannot answer it from the sources."
    )


def _label(hit: ChunkHit) -> str:
    parts = [hit.source]
    if hit.page is not None:
        parts.append(f"p.{hit.page}")
    if hit.heading_path:
        parts.append(" > ".join(hit.heading_path))
    return ", ".join(parts)


def grounded_messages(grounding: Grounding, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The client's messages with a system message of numbered sources put first."""
    sources = "\n\n".join(
        f"[{i}] ({_label(hit)})\n{hit.text}" for i, (_, hit) in enumerate(grounding.hits, start=1)
    )
    if chinese(grounding.question):
        instruction = (
            "请只根据下面编号的资料回答用户的问题，并在用到某条资料的句子后面用 [编号] 标注出处，例如 [1]。"
            "如果资料中没有答案，请直接说明资料中没有相关信息，不要编造。"
        )
    else:
        instruction = (
            "Answer the user's question using only the numbered sources below, and mark each "
            "sentence that uses a source with its number in brackets, e.g. [1]. If the sources do "
            "not contain the answer, say so instead of making one up."
        )
    system = {"role": "system", "content": f"{instruction}\n\n{sources}"}
    return [system, *messages]


def extractive_answer(grounding: Grounding) -> str:
    """The best passages as the answer, each with its marker (no generator involved)."""
    head = "根据知识库中的资料：" if chinese(grounding.question) else "From the knowledge base:"
    lines = [head]
    for i, (_, hit) in enumerate(grounding.hits, start=1):
        text = hit.text if len(hit.text) <= EXTRACT_CHARS else hit.text[:EXTRACT_CHARS] + "…"
        lines.append(f"[{i}] {text}")
    return "\n".join(lines)
