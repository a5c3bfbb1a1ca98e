"""Audit retention in the running gateway: entries older than ``STRATUM_AUDIT_RETENTION_DAYS`` are
pruned about once an hour (``AuditService.prune`` keeps a checkpoint so verification still works)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import anyio

from stratum.governance.audit import AuditService
from stratum.settings import Settings
from stratum.storage.db import utcnow

log = logging.getLogger(__name__)

_INTERVAL_S = 3600.0  # retention is counted in days: an hourly check is plenty


async def prune_periodically(audit: AuditService, settings: Settings) -> None:
    if settings.audit_retention_days is None:
        return
    keep = timedelta(days=settings.audit_retention_days)
    while True:
        try:
            result = await anyio.to_thread.run_sync(
                lambda: audit.prune(before=utcnow() - keep, actor="retention")
            )
            if result.pruned:
                log.info("pruned %d audit entries (through id %s)", result.pruned, result.through_id)
        except Exception:  # a broken chain or an unavailable store: try again next round
            log.warning("could not prune the audit log", exc_info=True)
        await asyncio.sleep(_INTERVAL_S)
