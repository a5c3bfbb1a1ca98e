"""Column types shared by the Alembic revisions in ``migrations/versions/``.

Revisions import these instead of each redefining them. A revision's schema must never change once
released, so these definitions are frozen: a new type gets a new function here, never an edit.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def json_type() -> sa.types.TypeEngine[Any]:
    """A JSON document column: ``JSON`` (text) on SQLite, ``JSONB`` on PostgreSQL."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
