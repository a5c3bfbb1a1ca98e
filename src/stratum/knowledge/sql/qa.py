"""Text-to-SQL prompting: the messages the model gets, the SQL taken from its reply, the answer text."""

from __future__ import annotations

import re
from typing import Any

from stratum.knowledge.sql.schemas import SQLAnswer

_FENCE = re.compile(r"```(?:sql|SQL|postgresql|sqlite)?\s*\n?(.*?)```", re.DOTALL)
_ROWS_SHOWN = 50  # rows printed in the readable answer; the extension field carries all of them

SYSTEM_PROMPT = """You translate questions into one SQL query.
Rules:
- Write exactly one read-only SELECT statement (CTEs allowed) in the dialect given below.
- Use only the tables and columns listed below; never SELECT from other tables.
- Reply with the SQL only, inside a ```sql code block, with no explanation.

Schema:
{schema}"""


def build_messages(
    schema: str, question: str, history: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Chat messages for the SQL writer: the schema as system prompt, earlier turns, the question."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT.format(schema=schema)}]
    for turn in history or []:
        if turn.get("role") in ("user", "assistant") and isinstance(turn.get("content"), str):
            messages.append({"role": turn["role"], "content": turn["content"]})
    messages.append({"role": "user", "content": question})
    return messages


def extract_sql(reply: str) -> str:
    """The SQL in a model reply: the first fenced block, else the whole reply."""
    match = _FENCE.search(reply)
    sql = match.group(1) if match else reply
    return sql.strip().rstrip(";").strip()


def last_question(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str) and content.strip():
            return content.strip()
        if message.get("role") == "user" and isinstance(content, list):
            text = " ".join(p.get("text", "") for p in content if isinstance(p, dict)).strip()
            if text:
                return text
    return ""


def answer_text(answer: SQLAnswer) -> str:
    """The readable answer: the executed SQL, then the result as a Markdown table (or the rejection)."""
    if answer.rejected:
        generated = f"\n\n```sql\n{answer.generated_sql}\n```" if answer.generated_sql else ""
        return f"The generated SQL was rejected and not run: {answer.rejected}{generated}"
    lines = [f"Executed SQL:\n\n```sql\n{answer.sql}\n```", ""]
    if not answer.rows:
        lines.append("The query returned no rows.")
        return "\n".join(lines)
    count = f"{len(answer.rows)}{'+' if answer.truncated else ''}"
    lines.append(f"Result ({count} rows{', truncated' if answer.truncated else ''}):")
    lines.append("")
    lines.append("| " + " | ".join(_cell(c) for c in answer.columns) + " |")
    lines.append("|" + "---|" * len(answer.columns))
    for row in answer.rows[:_ROWS_SHOWN]:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if len(answer.rows) > _ROWS_SHOWN:
        lines.append(f"\n({len(answer.rows) - _ROWS_SHOWN} more rows in the stratum_sql field)")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")
