"""Public dataset shapes (wire types for the CLI and the admin API; never ORM rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DatasetFormat = Literal["chat", "instruction", "preference"]


class Transform(BaseModel):
    """How a version was made: a step name and its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class DroppedExample(BaseModel):
    index: int = Field(description="Row index in the input version (0-based), or the source line.")
    reason: str
    text: str = Field(description="The row's text, cut to 200 characters.")


class StepReport(BaseModel):
    """What a step did: rows in and out, how many rows were dropped per reason, a few examples."""

    step: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = Field(default_factory=dict)
    changed: int = Field(default=0, description="Rows kept but modified (cleaned, scrubbed …).")
    added: int = Field(default=0, description="Rows added (augmentation).")
    examples: list[DroppedExample] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


class DatasetVersion(BaseModel):
    """One immutable version. ``ref`` (``NAME@N``) is what jobs and lineage record."""

    dataset: str
    project: str | None = Field(description="ORG/PROJECT, or null for a platform dataset.")
    number: int
    ref: str
    format: DatasetFormat
    content_hash: str
    row_count: int
    parent: str | None = Field(description="Ref of the version this one was made from.")
    transform: Transform
    report: dict[str, Any]
    path: str = Field(description="The Parquet file, relative to STRATUM_HOME.")
    splits: dict[str, int] = Field(default_factory=dict, description="Rows per split, when split.")
    created_by: str
    created_at: datetime


class DatasetPublic(BaseModel):
    name: str
    project: str | None
    format: DatasetFormat
    description: str | None
    latest: int
    created_at: datetime
    versions: list[DatasetVersion] = Field(default_factory=list)


class DatasetDiff(BaseModel):
    """Rows only in ``a``, only in ``b`` (by canonical content), and a sample of each."""

    a: str
    b: str
    rows_a: int
    rows_b: int
    common: int
    removed: int
    added: int
    removed_examples: list[dict[str, Any]]
    added_examples: list[dict[str, Any]]


class ReviewItem(BaseModel):
    id: int
    row_index: int
    label: str | None
    confidence: float
    status: Literal["pending", "accepted", "edited", "rejected"]
    row: dict[str, Any]
    edited: dict[str, Any] | None = None


class ReviewDecision(BaseModel):
    """A human decision on one queued row: ``row`` is the replacement when editing."""

    row_index: int = Field(ge=0)
    decision: Literal["accept", "edit", "reject"]
    row: dict[str, Any] | None = None
    label: str | None = None


class DatasetImport(BaseModel):
    """Admin API body for an import: the rows themselves (JSON objects of the format)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-\u4e00-\u9fff]{1,128}$")
    format: Literal["auto", "chat", "instruction", "preference"] = "auto"
    rows: list[dict[str, Any]]
    skip_invalid: bool = False
    description: str | None = None


class TransformRequest(BaseModel):
    steps: list[str] = Field(min_length=1)
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Parameters per step name, e.g. {'dedup': {'threshold': 0.8}}."
    )


class LabelRequest(BaseModel):
    """Admin API body: keyword/regex pre-labelling (``re:`` prefix for a regex), queue below threshold."""

    rules: dict[str, list[str]]
    default: str | None = None
    threshold: float = Field(default=0.6, ge=0, le=1)


class FeedbackDatasetRequest(BaseModel):
    """Admin API body: the project's low-scored feedback → the next version of a chat dataset."""

    model_config = ConfigDict(extra="forbid")

    name: str = "feedback"
    model: str | None = Field(default=None, description="NAME (every version) or NAME@VERSION.")
    since: datetime | None = Field(default=None, description="Feedback at or after this instant (ISO 8601).")
    max_score: float = Field(
        default=0.5, ge=0, le=1, description="Scores up to this count (thumbs down = 0)."
    )
    prompts: dict[str, Any] | None = Field(
        default=None,
        description="response_id -> prompt (text or messages) for feedback given before prompts were kept.",
    )

    @field_validator("since")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone (e.g. 2026-01-01T00:00:00Z)")
        return value


class LabelResult(BaseModel):
    version: DatasetVersion
    queued: int
