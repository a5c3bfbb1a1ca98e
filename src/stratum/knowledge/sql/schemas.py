"""Public types of database QA: a connection as registered and shown, a question, an answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[A-Za-z0-9_.\-]{1,64}$"


class DatabaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME, description="Served as model 'db/<name>'.")
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="sqlite:///path/to/file.db or postgresql://user:pass@host/db (stored encrypted).",
    )
    model: str = Field(min_length=1, max_length=160, description="The model that writes the SQL.")
    tables: dict[str, list[str]] = Field(
        min_length=1, description='Allow-list: {table: [column, ...]}, ["*"] for every column.'
    )
    row_filters: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="{role or '*': {table: SQL condition}}, "
        "e.g. {'viewer': {'orders': \"region = 'east'\"}}.",
    )
    descriptions: dict[str, str] = Field(
        default_factory=dict, description="{'table' or 'table.column': text} shown to the model."
    )
    description: str | None = Field(default=None, max_length=1000)
    max_rows: int | None = Field(default=None, ge=1, le=100_000)
    timeout_s: float | None = Field(default=None, gt=0, le=600)


class DatabasePublic(BaseModel):
    id: str
    project: str
    name: str
    dialect: str
    url: str  # without the password
    model: str
    tables: dict[str, list[str]]
    row_filters: dict[str, dict[str, str]]
    descriptions: dict[str, str]
    description: str | None
    max_rows: int
    timeout_s: float
    created_at: datetime


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(default=None, max_length=8000)
    sql: str | None = Field(default=None, max_length=20_000, description="Run this (checked) SQL instead.")


class SQLAnswer(BaseModel):
    """What one question produced: the model's SQL, the SQL that ran, and the result table."""

    database: str
    question: str | None = None
    generated_sql: str | None = None
    sql: str | None = None  # executed (checked and rewritten) SQL
    columns: list[str] = Field(default_factory=list)
    rows: list[list[Any]] = Field(default_factory=list)
    truncated: bool = False
    rejected: str | None = None  # why the SQL was not run
    elapsed_ms: float | None = None
