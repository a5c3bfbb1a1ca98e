"""Opening the platform's store for one CLI invocation.

The CLI writes straight into the same database the server reads, so a running gateway sees a new
model or a revoked key on its next request. Storage and the services are imported inside the
functions: they pull in SQLAlchemy and Alembic, and ``stratum --help`` should not pay for that.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from stratum.cli.output import CliError
from stratum.settings import Settings

if TYPE_CHECKING:
    from stratum.governance.audit import AuditService
    from stratum.governance.prices import PriceService
    from stratum.governance.service import KeyService
    from stratum.governance.tenancy import TenancyService
    from stratum.governance.usage import UsageService
    from stratum.registry.service import RegistryService
    from stratum.storage.db import Database


@contextmanager
def open_database(settings: Settings | None = None) -> Iterator[Database]:
    """A migrated database for the duration of the block (``migrate()`` is idempotent)."""
    from stratum.storage.db import Database

    settings = settings or Settings()
    try:
        db = Database(settings.resolved_database_url)
    except ValueError as exc:  # an unsupported STRATUM_DATABASE_URL scheme
        raise CliError(str(exc)) from exc
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()


@contextmanager
def registry_service() -> Iterator[RegistryService]:
    from stratum.registry.service import RegistryService

    with open_database() as db:
        yield RegistryService(db)


@contextmanager
def key_service() -> Iterator[KeyService]:
    from stratum.governance.service import KeyService

    with open_database() as db:
        yield KeyService(db)


@contextmanager
def tenancy_service() -> Iterator[TenancyService]:
    from stratum.governance.tenancy import TenancyService

    with open_database() as db:
        yield TenancyService(db)


@contextmanager
def usage_service() -> Iterator[UsageService]:
    from stratum.governance.usage import UsageService

    with open_database() as db:
        yield UsageService(db)


@contextmanager
def audit_service() -> Iterator[AuditService]:
    from stratum.governance.audit import AuditService

    with open_database() as db:
        yield AuditService(db)


@contextmanager
def price_service() -> Iterator[PriceService]:
    from stratum.governance.prices import PriceService

    with open_database() as db:
        yield PriceService(db)


def cli_actor() -> str:
    """Who the audit trail records for changes made from this terminal."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME, e.g. some containers
        return "cli"
