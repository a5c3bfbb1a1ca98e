"""Usage records (one per inference request, with its cost centre) and the reports built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stratum.governance import audit
from stratum.governance.prices import MONEY_PLACES, Price, cost, prices_for
from stratum.governance.schemas import UsageLine, UsageReport
from stratum.governance.tables import ApiKeyRow, UsageRow
from stratum.governance.tenancy import find_project
from stratum.storage import Database, utc_day, utcnow

GroupBy = Literal["model", "key", "day"]


@dataclass(frozen=True)
class UsageEntry:
    request_id: str
    key_id: str
    org_id: str | None
    project_id: str | None
    model: str
    endpoint: str
    prompt_tokens: int
    completion_tokens: int
    status: int = 200
    # What the content guard found and did (type counts and actions, never the text); None: nothing.
    guard: dict[str, Any] | None = None


def _cost(prices: dict[str, Price], entry: UsageEntry) -> Decimal | None:
    price = prices.get(entry.model[:160])
    if price is None:
        return None
    return cost(price, prompt_tokens=entry.prompt_tokens, completion_tokens=entry.completion_tokens)


class UsageService:
    """Serves: the gateway (``record`` after each request) and the admin API/CLI (``report``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, entries: Sequence[UsageEntry]) -> None:
        if not entries:
            return
        with self._db.session() as session:
            self.record_in(session, entries)

    def record_in(self, session: Session, entries: Sequence[UsageEntry]) -> None:
        """``record`` inside the caller's write transaction (the batched audit writer's)."""
        now = utcnow()
        prices = prices_for(session, (e.model[:160] for e in entries))
        for e in entries:
            # Metadata only: who, what, when, status and tokens; never bodies or keys.
            audit.append(
                session,
                actor=e.key_id,
                action="inference",
                target=e.endpoint,
                org_id=e.org_id,
                project_id=e.project_id,
                detail={
                    "request_id": e.request_id[:64],
                    "model": e.model[:160],
                    "status": e.status,
                    "prompt_tokens": e.prompt_tokens,
                    "completion_tokens": e.completion_tokens,
                    **({"guard": e.guard} if e.guard else {}),
                },
            )
        session.add_all(
            UsageRow(
                at=now,
                request_id=e.request_id[:64],
                key_id=e.key_id,
                org_id=e.org_id,
                project_id=e.project_id,
                model=e.model[:160],
                endpoint=e.endpoint,
                prompt_tokens=e.prompt_tokens,
                completion_tokens=e.completion_tokens,
                status=e.status,
                cost=_cost(prices, e),
            )
            for e in entries
        )

    def report(self, path: str, *, by: GroupBy = "model", since: date | None = None) -> UsageReport:
        """Requests and tokens of project ``ORG/PROJECT`` grouped by model, key or UTC day."""
        with self._db.session(write=False) as session:
            _, project = find_project(session, path)
            group = {"model": UsageRow.model, "key": UsageRow.key_id, "day": utc_day(UsageRow.at)}[by]
            query = (
                select(
                    group,
                    func.count(),
                    func.coalesce(func.sum(UsageRow.prompt_tokens), 0),
                    func.coalesce(func.sum(UsageRow.completion_tokens), 0),
                    func.coalesce(func.sum(UsageRow.cost), 0),
                )
                .where(UsageRow.project_id == project.id)
                .group_by(group)
                .order_by(group)
            )
            if since is not None:
                query = query.where(UsageRow.at >= datetime(since.year, since.month, since.day, tzinfo=UTC))
            rows = session.execute(query).all()
            names: dict[str, str] = {}
            if by == "key":
                keys = session.execute(
                    select(ApiKeyRow.id, ApiKeyRow.name).where(ApiKeyRow.project_id == project.id)
                )
                names = {key_id: f"{name} ({key_id})" for key_id, name in keys}
        lines = [
            UsageLine(
                group=names.get(str(g), str(g)),
                requests=int(n),
                prompt_tokens=int(p),
                completion_tokens=int(c),
                total_tokens=int(p) + int(c),
                cost=Decimal(str(money)).quantize(MONEY_PLACES),
            )
            for g, n, p, c, money in rows
        ]
        total = UsageLine(
            group="total",
            requests=sum(line.requests for line in lines),
            prompt_tokens=sum(line.prompt_tokens for line in lines),
            completion_tokens=sum(line.completion_tokens for line in lines),
            total_tokens=sum(line.total_tokens for line in lines),
            cost=sum((line.cost for line in lines), Decimal(0)).quantize(MONEY_PLACES),
        )
        return UsageReport(project=path, by=by, since=since, lines=lines, total=total)

    def billed_tokens(self, *, project_id: str | None = None, key_id: str | None = None) -> int:
        """Total tokens recorded for a project or key (tests and checks of exactness)."""
        query = select(func.coalesce(func.sum(UsageRow.prompt_tokens + UsageRow.completion_tokens), 0))
        if project_id is not None:
            query = query.where(UsageRow.project_id == project_id)
        if key_id is not None:
            query = query.where(UsageRow.key_id == key_id)
        with self._db.session(write=False) as session:
            return int(session.scalar(query) or 0)


def since_date(value: str | None) -> date | None:
    """Parse ``--since``: ``YYYY-MM-DD`` or ``Nd`` (the last N days)."""
    if value is None:
        return None
    text = value.strip()
    if text.endswith("d") and text[:-1].isdigit():
        return date.fromordinal(utcnow().date().toordinal() - int(text[:-1]))
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"--since takes YYYY-MM-DD or Nd (e.g. 7d), got {value!r}") from exc
