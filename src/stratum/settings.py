"""All configuration, read from ``STRATUM_*`` environment variables (and ``.env``).

Every field here is listed in the README's settings table; ``tests/test_settings.py`` checks that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STRATUM_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path(".stratum"), description="Directory holding all state.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///$STRATUM_HOME/stratum.db. "
        "PostgreSQL: postgresql+psycopg://user:pass@host/db",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL (redis://host:6379/0) for quota counters shared by several gateway "
        "processes; unset: counters live in the database.",
    )
    host: str = Field(default="127.0.0.1", description="Address the gateway binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the gateway binds.")
    admin_key: SecretStr | None = Field(
        default=None, description="Admin API key to use instead of a generated one."
    )
    demo_model: bool = Field(default=True, description="Build (once) and serve the demo model.")
    embeddings_model: bool = Field(default=True, description="Serve the bundled multilingual encoder.")
    max_queue: int = Field(
        default=64, ge=1, description="Requests waiting for an engine slot before 503 + Retry-After."
    )
    max_batch: int = Field(
        default=16, ge=1, description="Sequences the engine loop runs at once; the rest wait in the queue."
    )
    prefill_chunk: int = Field(
        default=128,
        ge=1,
        description="Prompt tokens a newcomer prefills per engine step (keeps streams flowing).",
    )
    max_kv_tokens: int | None = Field(
        default=None,
        ge=1,
        description="KV-cache budget per model in tokens; requests beyond it wait. Unset: none.",
    )
    request_timeout: float = Field(default=300.0, gt=0, description="Seconds before a generation is cut.")
    upstream_timeout: float = Field(default=60.0, gt=0, description="Seconds to wait on an upstream.")
    torch_threads: int = Field(
        default=0, ge=0, description="torch intra-op threads; 0 keeps torch's default."
    )
    dtype: Literal["float32", "bfloat16"] = Field(default="float32", description="Weights dtype on CPU.")
    log_level: str = Field(default="INFO", description="Root log level.")
    log_json: bool | None = Field(default=None, description="JSON logs; default: JSON unless a TTY.")
    # --- governance: audit retention ---
    audit_retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Days of audit entries to keep; older ones are pruned behind a checkpoint. Unset: all.",
    )

    # -- serving engine: model cache (gateway/model_cache.py) --
    model_cache_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Memory budget for loaded models and LoRA adapters together; idle ones are evicted "
        "(LRU weighted by use). Unset: no limit.",
    )
    pinned_models: str = Field(
        default="",
        description="Comma-separated model refs (name, name@version, name:alias) loaded at start and "
        "never evicted; registry metadata pinned=true does the same.",
    )

    @property
    def pinned_model_refs(self) -> list[str]:
        return [ref.strip() for ref in self.pinned_models.split(",") if ref.strip()]

    # --- routing, fallback and response cache (stratum.routing, stratum.cache) ---
    upstream_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Upstream retries on connect errors, 5xx and 429, before any byte.",
    )
    upstream_backoff: float = Field(
        default=0.25, ge=0, description="First retry delay in seconds; doubles per attempt, with jitter."
    )
    upstream_http2: bool = Field(default=True, description="Offer HTTP/2 to upstreams (shared pool).")
    circuit_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open a backend's circuit."
    )
    circuit_open_s: float = Field(
        default=30.0, gt=0, description="Seconds an open circuit rejects before one half-open trial."
    )
    health_interval: float = Field(
        default=15.0, ge=0, description="Seconds between upstream health checks; 0 turns them off."
    )
    burst_queue: int = Field(
        default=8, ge=0, description="Local queue length past which a route bursts to its next priority."
    )
    fallback_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a backend's first token before falling back."
    )
    cache: bool = Field(default=True, description="Exact response cache for deterministic requests.")
    cache_ttl: float = Field(default=600.0, gt=0, description="Seconds a cached response stays valid.")
    cache_entries: int = Field(default=10_000, ge=1, description="Responses the in-process cache keeps.")
    semantic_cache: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Cosine similarity for semantic cache hits (per project and version); unset: off.",
    )

    # -- releases: lineage, feedback, deployments, artifact tiers --
    response_flush_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between writes of served-response records (feedback, canary health).",
    )
    canary_interval: float = Field(
        default=15.0, gt=0, description="Seconds between two checks of the running canaries."
    )
    response_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Days served-response records are kept (feedback can be given that long).",
    )
    artifacts_url: str | None = Field(
        default=None, description="fsspec URL of the cold artifact tier, e.g. s3://bucket/prefix."
    )
    artifacts_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint for the cold tier (MinIO), e.g. http://minio:9000."
    )

    # Knowledge bases (stratum.knowledge)
    kb_ingest_root: Path | None = Field(
        default=None,
        description="Folder whose files API keys with kb.write may ingest; unset: platform admins only.",
    )

    # --- jobs (stratum.jobs): queue, scheduler and workers ---
    worker: bool = Field(default=True, description="`stratum serve` also runs a job worker in-process.")
    executor: Literal["process", "ray"] = Field(
        default="process",
        description="How a worker runs jobs: 'process' (a child process per job) or 'ray' (Ray tasks).",
    )
    worker_cpu_threads: int = Field(
        default=0, ge=0, description="CPU threads a worker offers to jobs; 0: the machine's core count."
    )
    worker_memory_mb: int = Field(
        default=0, ge=0, description="Memory (MB) a worker offers to jobs; 0: 80% of the machine's RAM."
    )
    worker_gpus: int = Field(default=0, ge=0, description="GPUs a worker offers to jobs (the GPU pool).")
    jobs_max_running: int = Field(
        default=0, ge=0, description="Jobs running at once across all workers; 0: no limit but capacity."
    )
    job_lease_seconds: float = Field(
        default=30.0, gt=0, description="A running job whose worker is silent this long is requeued."
    )

    # --- knowledge.sql: LLM + database QA (text-to-SQL) ---
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key encrypting stored database credentials; unset: a key file "
        "$STRATUM_HOME/secret.key is created (set this when several gateways share one store).",
    )
    sql_max_rows: int = Field(default=200, ge=1, le=100_000, description="Default row cap of database QA.")
    sql_timeout: float = Field(default=10.0, gt=0, description="Default seconds a database QA query may run.")
    # --- serving engine: prefix reuse (engine/prefix_cache.py) ---
    prefix_cache: bool = Field(
        default=True, description="Reuse the KV of prompt heads already seen (shared system prompts)."
    )
    prefix_cache_tokens: int = Field(
        default=4096,
        ge=1,
        description="Prompt KV tokens the prefix cache keeps per model (LRU), within STRATUM_MAX_KV_TOKENS.",
    )

    # --- pipelines loop (jobs, evals, feedback): Ray executor, scheduled re-evaluation, prompts ---
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster for STRATUM_EXECUTOR=ray, e.g. ray://head:10001; unset: a local Ray.",
    )
    eval_schedule_poll: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between a worker's checks for due eval schedules; 0: workers run none.",
    )
    feedback_prompts: bool = Field(
        default=True,
        description="Keep each chat response's prompt (after the guard's masking) for feedback datasets.",
    )
    prompt_retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Days prompts kept with feedback are stored; unset: STRATUM_AUDIT_RETENTION_DAYS "
        "(unset too: kept).",
    )

    # --- knowledge: uploads, URL ingest (stratum.knowledge, issue 8) ---
    kb_upload_max_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1, description="Largest file one KB upload may carry (bytes)."
    )
    kb_ocr_languages: str = Field(
        default="chi_sim+eng",
        pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$",
        description="Tesseract languages for scanned files (e.g. chi_tra+eng); each needs its data package.",
    )
    kb_fetch_timeout: float = Field(default=20.0, gt=0, description="Seconds a KB URL fetch may take.")
    kb_fetch_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="Largest page a KB URL fetch downloads (bytes)."
    )
    kb_fetch_allow_private: bool = Field(
        default=False,
        description="API/job URL ingest may fetch loopback and private-network addresses.",
    )

    # --- engine.e5_torch: the bundled e5 encoder's speed knobs (issue 8) ---
    embed_precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="Compute precision of the bundled e5 encoder: auto = bf16 where the CPU has native "
        "bf16 dot products, else fp32.",
    )
    embed_passage_tokens: int = Field(
        default=512,
        ge=16,
        le=512,
        description="Tokens of a passage (KB chunk) the bundled e5 encoder reads; fewer is faster, "
        "the rest of a long chunk then only reaches BM25.",
    )
    embed_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads the bundled e5 encoder uses for bulk (ingest) batches; unset: torch's "
        "default (all cores unless OMP_NUM_THREADS). Queries always run on one thread.",
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'stratum.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"
