"""Database connections registered for text-to-SQL (migration 0009).

``url_encrypted`` is the connection URL (a SQLite path or a PostgreSQL URL with its password),
Fernet-encrypted with the install's secret key (``stratum.knowledge.sql.secrets``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stratum.storage import Base, utcnow


class DatabaseRow(Base):
    __tablename__ = "sql_databases"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    dialect: Mapped[str] = mapped_column(String(16))
    url_encrypted: Mapped[str] = mapped_column(Text)
    # Shown instead of the URL: scheme, host and database, never the password.
    url_display: Mapped[str] = mapped_column(String(300))
    model: Mapped[str] = mapped_column(String(160))
    description: Mapped[str | None] = mapped_column(String(1000))
    # {table: [column, ...]} with ["*"] for every column of the table.
    tables: Mapped[dict[str, Any]] = mapped_column()
    # {role or "*": {table: condition}}
    row_filters: Mapped[dict[str, Any]] = mapped_column()
    # {"table" or "table.column": text} shown to the model next to the schema.
    descriptions: Mapped[dict[str, Any]] = mapped_column()
    max_rows: Mapped[int] = mapped_column(Integer)
    timeout_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
