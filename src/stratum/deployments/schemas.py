"""Public deployment types: what the API, CLI and gateway see (never the ORM rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DeploymentMode = Literal["canary", "ab"]
DeploymentStatus = Literal["canary", "promoted", "rolled_back", "ab", "stopped"]


class Thresholds(BaseModel):
    """When a canary is rolled back: the candidate is worse than stable by more than these.

    Seed defaults from the issue: quality drop > 3 % (mean feedback score, on its 0-1 scale, 0.03
    lower), p99 latency > +200 ms, error rate > +1 percentage point.
    """

    model_config = ConfigDict(frozen=True)

    error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Extra error rate tolerated (0.01 = 1 pp)."
    )
    p99_ms: float = Field(default=200.0, ge=0, description="Extra p99 latency tolerated, in milliseconds.")
    quality_drop: float = Field(
        default=0.03, ge=0, le=1, description="Drop of the mean feedback score (0-1) tolerated."
    )
    min_samples: int = Field(
        default=20, ge=1, description="Requests per arm in the window before latency/errors are judged."
    )
    min_feedback: int = Field(default=20, ge=1, description="Feedback per arm before quality is judged.")
    window_s: float = Field(default=300.0, gt=0, description="Sliding window, seconds.")


class DeploymentPublic(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    mode: DeploymentMode
    status: DeploymentStatus
    stable_ref: str
    candidate_ref: str | None
    weights: dict[str, float] = Field(description="Version ref → percent of traffic.")
    steps: list[float]
    step_index: int
    interval_s: float
    thresholds: Thresholds
    created_by: str
    started_at: datetime
    step_started_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.status in ("canary", "ab")


class DeploymentEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    deployment: str
    action: str
    actor: str
    weights: dict[str, float]
    detail: dict[str, Any]
    at: datetime


class ArmStats(BaseModel):
    """One version's outcomes over a window."""

    model_config = ConfigDict(frozen=True)

    ref: str
    requests: int
    errors: int
    error_rate: float
    p99_ms: float | None
    feedback: int
    mean_score: float | None
    positives: int = 0


class Verdict(BaseModel):
    """What the controller concluded for one deployment on one tick."""

    model_config = ConfigDict(frozen=True)

    action: Literal["wait", "step", "promote", "rollback"]
    reasons: list[str] = Field(default_factory=list)
    candidate: ArmStats | None = None
    stable: ArmStats | None = None


class ArmReport(BaseModel):
    ref: str
    weight: float
    stats: ArmStats


class ABReport(BaseModel):
    """Per-arm metrics and significance of the difference in feedback."""

    name: str
    arms: list[ArmReport]
    # Two-proportion z-test on positive feedback (score ≥ 0.5) between the first two arms.
    z: float | None = None
    p_value: float | None = None
    # Bootstrap of the difference of mean scores (arm B - arm A): point estimate and 95 % interval.
    mean_diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    significant: bool | None = None
    note: str | None = None
