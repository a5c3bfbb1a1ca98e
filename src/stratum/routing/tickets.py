"""The human hand-off queue: requests stored as tickets, answered by an operator, fetched by id.

A ticket keeps the tenant of the key that asked (org, project, key), so only that project (or a
platform admin) can read it back; an operator answers with ``stratum queue answer`` or the admin API.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from stratum.errors import Conflict, NotFound
from stratum.governance import audit
from stratum.routing.schemas import Ticket, TicketStatus
from stratum.routing.tables import TicketRow
from stratum.storage import Database, utcnow

# Characters of a question shown in lists; the full messages stay on the ticket.
_QUESTION_CHARS = 2000


def question_of(messages: Sequence[dict[str, Any]]) -> str:
    """The last user message's text (what a person has to answer)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _public(row: TicketRow) -> Ticket:
    return Ticket(
        id=row.id,
        model=row.model,
        status=row.status,  # type: ignore[arg-type]
        reason=row.reason,
        question=question_of(row.messages)[:_QUESTION_CHARS],
        messages=row.messages,
        answer=row.answer,
        answered_by=row.answered_by,
        created_at=row.created_at,
        answered_at=row.answered_at,
        project_id=row.project_id,
    )


class TicketService:
    """Serves: the human link of fallback chains, ``stratum queue …``, ``/admin/v1/queue`` and
    ``/v1/tickets``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        *,
        model: str,
        messages: Sequence[dict[str, Any]],
        reason: str,
        org_id: str | None = None,
        project_id: str | None = None,
        key_id: str | None = None,
    ) -> Ticket:
        with self._db.session() as session:
            row = TicketRow(
                id=f"tkt_{secrets.token_hex(10)}",
                model=model[:160],
                org_id=org_id,
                project_id=project_id,
                key_id=key_id,
                messages=[dict(m) for m in messages],
                reason=reason[:32],
                status="open",
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            return _public(row)

    def get(self, ticket_id: str, *, project_id: str | None = None, key_id: str | None = None) -> Ticket:
        """The ticket; with ``project_id``/``key_id`` only if it belongs to them (else NotFound)."""
        with self._db.session(write=False) as session:
            row = session.get(TicketRow, ticket_id)
            if row is None or not _owned(row, project_id=project_id, key_id=key_id):
                raise NotFound(f"No ticket {ticket_id!r}.", param="ticket_id")
            return _public(row)

    def list(self, *, status: TicketStatus | None = None, limit: int = 100) -> list[Ticket]:
        with self._db.session(write=False) as session:
            query = select(TicketRow).order_by(TicketRow.created_at, TicketRow.id).limit(limit)
            if status is not None:
                query = query.where(TicketRow.status == status)
            return [_public(row) for row in session.execute(query).scalars()]

    def answer(self, ticket_id: str, text: str, *, actor: str = audit.LOCAL_ACTOR) -> Ticket:
        with self._db.session() as session:
            row = session.get(TicketRow, ticket_id, with_for_update=True)
            if row is None:
                raise NotFound(f"No ticket {ticket_id!r}.", param="ticket_id")
            if row.status == "answered":
                raise Conflict(f"ticket {ticket_id} was already answered by {row.answered_by}")
            row.status, row.answer, row.answered_by, row.answered_at = "answered", text, actor[:64], utcnow()
            audit.append(
                session,
                actor=actor,
                action="ticket.answer",
                target=ticket_id,
                org_id=row.org_id,
                project_id=row.project_id,
                detail={"model": row.model, "chars": len(text)},
            )
            session.flush()
            return _public(row)


def _owned(row: TicketRow, *, project_id: str | None, key_id: str | None) -> bool:
    if project_id is None and key_id is None:
        return True  # platform admin / operator
    if row.project_id is not None:
        return row.project_id == project_id
    return row.key_id is not None and row.key_id == key_id
