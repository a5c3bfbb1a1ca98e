"""Route definitions in the store: ``stratum routes set|list|remove`` and ``/admin/v1/routes``."""

from __future__ import annotations

from sqlalchemy import select

from stratum.errors import NotFound
from stratum.governance import audit
from stratum.routing.schemas import Route
from stratum.routing.tables import RouteRow
from stratum.storage import Database, utcnow


def _public(row: RouteRow) -> Route:
    return Route(
        model=row.model,
        backends=row.backends,
        fallback=row.fallback,
        triggers=row.triggers,
        burst_queue=row.burst_queue,
        timeout_s=row.timeout_s,
        updated_at=row.updated_at,
    )


class RouteService:
    """Serves: the routes CLI and admin API, and the gateway's router (``find``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def set_route(self, route: Route, *, actor: str = audit.LOCAL_ACTOR) -> Route:
        """Create or replace the route of ``route.model``; the gateway uses it within a second."""
        with self._db.session() as session:
            row = session.get(RouteRow, route.model)
            if row is None:
                row = RouteRow(model=route.model)
                session.add(row)
            document = route.model_dump(mode="json", exclude={"model", "updated_at"})
            row.backends = document["backends"]
            row.fallback = document["fallback"]
            row.triggers = document["triggers"]
            row.burst_queue = route.burst_queue
            row.timeout_s = route.timeout_s
            row.updated_at = utcnow()
            audit.append(session, actor=actor, action="route.set", target=route.model, detail=document)
            session.flush()
            return _public(row)

    def list_routes(self) -> list[Route]:
        with self._db.session(write=False) as session:
            rows = session.execute(select(RouteRow).order_by(RouteRow.model)).scalars()
            return [_public(row) for row in rows]

    def find(self, model: str) -> Route | None:
        with self._db.session(write=False) as session:
            row = session.get(RouteRow, model[:160])
            return _public(row) if row is not None else None

    def get_route(self, model: str) -> Route:
        found = self.find(model)
        if found is None:
            raise NotFound(f"No route for model {model!r}.", param="model")
        return found

    def remove_route(self, model: str, *, actor: str = audit.LOCAL_ACTOR) -> None:
        with self._db.session() as session:
            row = session.get(RouteRow, model)
            if row is None:
                raise NotFound(f"No route for model {model!r}.", param="model")
            session.delete(row)
            audit.append(session, actor=actor, action="route.remove", target=model)
