"""Storage: the SQLAlchemy engine and sessions, SQLite by default, PostgreSQL by URL, and migrations."""

from stratum.storage.db import (
    POSTGRES_INSTALL_HINT,
    Base,
    Database,
    JSONDocument,
    UTCDateTime,
    advisory_lock,
    utc_day,
    utcnow,
)

__all__ = [
    "POSTGRES_INSTALL_HINT",
    "Base",
    "Database",
    "JSONDocument",
    "UTCDateTime",
    "advisory_lock",
    "utc_day",
    "utcnow",
]
