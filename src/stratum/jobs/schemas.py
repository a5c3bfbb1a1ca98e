"""Wire and service types of the job queue (never ORM rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")
# The states in which a job holds its ``exclusive_key`` (``tables.ACTIVE_CLAUSE`` in the store).
ACTIVE: tuple[JobStatus, ...] = ("queued", "running")

# Far beyond one machine, yet small enough that a typo (memory in bytes) is caught.
_MAX_THREADS = 1024
_MAX_MEMORY_MB = 4 * 1024 * 1024
_MAX_GPUS = 64
# Leaves room in the column (255) for the jobs API's ``project:<32-char id>:`` scope prefix.
_MAX_EXCLUSIVE_KEY = 128


class Resources(BaseModel):
    """What one attempt of a job holds on its worker while it runs."""

    model_config = ConfigDict(extra="forbid")

    cpu_threads: int = Field(default=1, ge=1, le=_MAX_THREADS, description="CPU threads (torch threads).")
    memory_mb: int = Field(default=1024, ge=1, le=_MAX_MEMORY_MB, description="Memory in MB.")
    gpus: int = Field(default=0, ge=0, le=_MAX_GPUS, description="GPUs; > 0 puts the job in the GPU pool.")

    @property
    def pool(self) -> str:
        return "gpu" if self.gpus else "cpu"


class JobSubmit(BaseModel):
    """A job to queue. ``config`` is validated by the job kind before the job is stored."""

    model_config = ConfigDict(extra="ignore")

    kind: str = Field(min_length=1, max_length=64, description="A job kind, e.g. sft, dpo, full, sleep.")
    config: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(default=None, max_length=128)
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first.")
    resources: Resources = Field(default_factory=Resources)
    max_attempts: int = Field(default=2, ge=1, le=100, description="Attempts before the job fails.")
    exclusive_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=_MAX_EXCLUSIVE_KEY,
        description="At most one queued or running job holds a key: submitting a second one is a 409 "
        "naming the holder. Some kinds set their own (kb_ingest: one ingest per knowledge base).",
    )


class Progress(BaseModel):
    """The latest progress a running job reported."""

    step: int | None = None
    total: int | None = None
    loss: float | None = None
    eta_s: float | None = None
    message: str | None = None


class JobPublic(BaseModel):
    id: str
    kind: str
    name: str | None
    status: JobStatus
    project: str | None = Field(description="ORG/PROJECT, or null for a platform job.")
    priority: int
    config: dict[str, Any]
    resources: Resources
    pool: str
    attempts: int
    max_attempts: int
    cancel_requested: bool
    worker_id: str | None
    progress: dict[str, Any]
    metrics: dict[str, Any]
    result: dict[str, Any]
    error: str | None
    exclusive_key: str | None = None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None


class JobLogs(BaseModel):
    id: str
    text: str
    offset: int = Field(description="Byte offset after the returned text: pass it back to follow.")


class Claim(BaseModel):
    """An attempt a worker won: what it needs to start the job's child process."""

    id: str
    kind: str
    attempt: int
    config: dict[str, Any]
    resources: Resources
    project: str | None = Field(default=None, description="ORG/PROJECT the job belongs to.")
