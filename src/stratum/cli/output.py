"""How every command prints: JSON for machines, rich tables for people, one line per error.

Data goes to stdout, diagnostics (errors, warnings, notes) to stderr, so ``stratum … --json | jq``
always sees clean JSON. Consoles are built per call: rich picks up whatever ``sys.stdout`` is at
that moment, which is what ``CliRunner`` swaps in.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


class CliError(Exception):
    """A failure the CLI itself detects (bad flag combination, server unreachable …)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _stdout() -> Console:
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Pretty JSON with non-ASCII kept readable (Chinese names stay Chinese)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_error(message: str) -> None:
    # soft_wrap: never break the one error line at the terminal width.
    _stderr().print(Text.assemble(("error: ", "bold red"), one_line(message)), soft_wrap=True)


def print_warning(message: str) -> None:
    _stderr().print(Text.assemble(("warning: ", "bold yellow"), message), soft_wrap=True)


def print_note(message: str) -> None:
    _stderr().print(Text(message, style="dim"), soft_wrap=True)


def print_success(message: str) -> None:
    _stdout().print(Text(message, style="green"), soft_wrap=True)


def abridge(text: str | None, width: int) -> str | None:
    """``text`` cut to ``width`` characters with an ellipsis (tables; --json keeps it whole)."""
    if text is None or len(text) <= width:
        return text
    return text[: width - 1].rstrip() + "…"


def one_line(message: str) -> str:
    """Collapse a possibly multi-line message (e.g. a pydantic report) to a single line."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def cell(value: Any) -> str:
    """Render one table cell: empty for None, ISO-ish minutes for datetimes, compact JSON for dicts."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        # Shown in the reader's local time; --json keeps the exact UTC instant.
        local = value.astimezone() if value.tzinfo else value
        return local.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str) if value else ""
    return str(value)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
    headers: Mapping[str, str] | None = None,
) -> None:
    """A rich table of ``columns`` picked from each row (missing keys show as blank)."""
    if not rows:
        print_note(empty)
        return
    # A light box leaves more of a narrow terminal to the cells.
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column((headers or {}).get(column, column.replace("_", " ")), overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell(row.get(column))) for column in columns))
    _stdout().print(table)


def print_fields(fields: Mapping[str, Any], *, title: str | None = None, raw_keys: bool = False) -> None:
    """A two-column key/value table for one object; ``raw_keys`` shows keys as stored (metadata)."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in fields.items():
        table.add_row(Text(key if raw_keys else key.replace("_", " ")), Text(cell(value)))
    _stdout().print(table)
