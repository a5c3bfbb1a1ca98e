"""Removing documents and whole KBs with what hangs off them (ingest jobs, uploaded files): one
place for the gateway's routes and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stratum.knowledge import ingest_job, uploads
from stratum.knowledge.schemas import DocumentPublic, KbPublic
from stratum.knowledge.service import KnowledgeService


def remove_documents(
    jobs: Any, service: KnowledgeService, kb: KbPublic, sources: Sequence[str], artifacts_dir: Path
) -> list[DocumentPublic]:
    """Remove documents (all named or none) with their chunks and uploaded files. Refused (409)
    while an ingest of the KB is queued or running: it could be re-adding one of them."""
    ingest_job.check_idle(jobs, kb)
    removed = service.remove_documents(kb, sources)
    uploads.remove(artifacts_dir, kb, [d.source for d in removed])
    return removed


def delete_kb(jobs: Any, service: KnowledgeService, kb: KbPublic, artifacts_dir: Path) -> None:
    """Delete a KB: its queued or running ingest jobs are cancelled, its uploaded files removed."""
    ingest_job.cancel_all(jobs, kb)
    service.delete(kb)
    uploads.remove_all(artifacts_dir, kb)
