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

    # --- knowledge.sql: LLM + database QA (text-to-SQL) ---
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key encrypting stored database credentials; unset: a key file "
        "$STRATUM_HOME/secret.key is created (set this when several gateways share one store).",
    )
    sql_max_rows: int = Field(default=200, ge=1, le=100_000, description="Default row cap of database QA.")
    sql_timeout: float = Field(default=10.0, gt=0, description="Default seconds a database QA query may run.")

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
