"""Deployments: which registry versions serve a public model name, with what share of traffic.

    canary   stable + candidate; the candidate's share follows ``steps`` (e.g. 5, 20, 100), one step
             per ``interval`` while it stays healthy (``health.judge``); reaching 100 % promotes it,
             a breach of a threshold rolls traffic back to stable at once.
    ab       a fixed split between two or more versions, sticky per user or key (``router``).

Every change is a row in ``deployment_events`` (with the numbers that triggered it) and an entry in
the governance audit log, in the same transaction. A deployment that is rolled back or promoted
keeps routing its name to the version it settled on until it is stopped; ``stop`` hands the name
back to the registry's default alias.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from stratum.deployments.schemas import DeploymentEvent, DeploymentPublic, Thresholds, Verdict
from stratum.deployments.tables import DeploymentEventRow, DeploymentRow
from stratum.errors import Conflict, InvalidRequest, NotFound
from stratum.governance import audit
from stratum.registry import lineage
from stratum.registry.schemas import validate_name
from stratum.registry.service import RegistryService
from stratum.storage import Database, advisory_lock, utcnow

DEFAULT_STEPS: tuple[float, ...] = (5, 20, 100)
DEFAULT_INTERVAL_S = 600.0
# Routed statuses: a settled deployment (promoted/rolled back) still pins its name to one version.
ROUTED = ("canary", "ab", "promoted", "rolled_back")


def _public(row: DeploymentRow) -> DeploymentPublic:
    return DeploymentPublic(
        name=row.name,
        mode=row.mode,  # type: ignore[arg-type]  # checked on write
        status=row.status,  # type: ignore[arg-type]
        stable_ref=row.stable_ref,
        candidate_ref=row.candidate_ref,
        weights={k: float(v) for k, v in row.weights.items()},
        steps=[float(s) for s in row.steps],
        step_index=row.step_index,
        interval_s=row.interval_s,
        thresholds=Thresholds(**row.thresholds),
        created_by=row.created_by,
        started_at=row.started_at,
        step_started_at=row.step_started_at,
        updated_at=row.updated_at,
    )


def _event_public(row: DeploymentEventRow) -> DeploymentEvent:
    return DeploymentEvent(
        id=row.id,
        deployment=row.deployment,
        action=row.action,
        actor=row.actor,
        weights=row.weights,
        detail=row.detail,
        at=row.at,
    )


def parse_steps(steps: Sequence[float]) -> list[float]:
    values = [float(s) for s in steps]
    if not values or any(not 0 < v <= 100 for v in values):
        raise InvalidRequest("steps are percents in (0, 100], e.g. 5,20,100.", param="steps")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise InvalidRequest("steps must increase, e.g. 5,20,100.", param="steps")
    if values[-1] != 100:
        raise InvalidRequest("the last step must be 100 (the promotion).", param="steps")
    if len(values) < 2:
        raise InvalidRequest("a canary needs a first step below 100, e.g. 5,100.", param="steps")
    return values


class DeploymentService:
    """Serves: ``stratum deploy``/``stratum ab`` and the admin API (start, stop, promote, rollback,
    status, history), the gateway router (``routing_table``) and the canary controller (``apply``)."""

    def __init__(self, db: Database, registry: RegistryService) -> None:
        self._db = db
        self._registry = registry

    # -- reads -----------------------------------------------------------------------------------

    def get(self, name: str) -> DeploymentPublic:
        with self._db.session(write=False) as session:
            return _public(self._row(session, name))

    def list_deployments(self) -> list[DeploymentPublic]:
        with self._db.session(write=False) as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)).all()
            return [_public(row) for row in rows]

    def history(self, name: str, *, limit: int = 100) -> list[DeploymentEvent]:
        """Events oldest first (the last ``limit``)."""
        with self._db.session(write=False) as session:
            self._row(session, name)
            rows = session.scalars(
                select(DeploymentEventRow)
                .where(DeploymentEventRow.deployment == name)
                .order_by(DeploymentEventRow.id.desc())
                .limit(limit)
            ).all()
            return [_event_public(row) for row in reversed(rows)]

    def routing_table(self) -> dict[str, DeploymentPublic]:
        """Deployments that route their name, by name (the gateway caches this for a second)."""
        with self._db.session(write=False) as session:
            rows = session.scalars(select(DeploymentRow).where(DeploymentRow.status.in_(ROUTED))).all()
            return {row.name: _public(row) for row in rows}

    # -- changes ---------------------------------------------------------------------------------

    def start_canary(
        self,
        *,
        name: str,
        candidate: str,
        stable: str | None = None,
        steps: Sequence[float] = DEFAULT_STEPS,
        interval_s: float = DEFAULT_INTERVAL_S,
        thresholds: Thresholds | None = None,
        actor: str = "system",
    ) -> DeploymentPublic:
        """Route ``steps[0]`` % of ``name`` to ``candidate`` and the rest to ``stable``."""
        validate_name(name)
        plan = parse_steps(steps)
        if interval_s <= 0:
            raise InvalidRequest("interval must be positive.", param="interval")
        candidate_ref = self._version_ref(name, candidate, param="candidate")
        stable_ref = self._stable_ref(name, stable, candidate_ref=candidate_ref)
        if candidate_ref == stable_ref:
            raise InvalidRequest(
                f"the candidate {candidate_ref} is already the stable version.", param="candidate"
            )
        weights = {stable_ref: 100 - plan[0], candidate_ref: plan[0]}
        limits = thresholds or Thresholds()
        detail = {"stable": stable_ref, "candidate": candidate_ref, "steps": plan, "interval_s": interval_s}
        return self._start(
            name=name,
            mode="canary",
            status="canary",
            stable_ref=stable_ref,
            candidate_ref=candidate_ref,
            weights=weights,
            steps=plan,
            interval_s=interval_s,
            thresholds=limits.model_dump(),
            actor=actor,
            detail=detail | {"thresholds": limits.model_dump()},
        )

    def start_ab(self, *, name: str, arms: dict[str, float], actor: str = "system") -> DeploymentPublic:
        """A fixed split: ``arms`` maps versions (``2`` or ``NAME@2``) to percents adding up to 100."""
        validate_name(name)
        if len(arms) < 2:
            raise InvalidRequest("an A/B test needs at least two versions.", param="arms")
        weights: dict[str, float] = {}
        for version, weight in arms.items():
            ref = self._version_ref(name, version, param="arms")
            if not 0 < weight < 100 or ref in weights:
                raise InvalidRequest("each arm is a distinct version with a share in (0, 100).", param="arms")
            weights[ref] = float(weight)
        if abs(sum(weights.values()) - 100) > 1e-6:
            raise InvalidRequest(f"the shares add up to {sum(weights.values())}, not 100.", param="arms")
        refs = list(weights)
        return self._start(
            name=name,
            mode="ab",
            status="ab",
            stable_ref=refs[0],
            candidate_ref=refs[1],
            weights=weights,
            steps=[],
            interval_s=0.0,
            thresholds=Thresholds().model_dump(),
            actor=actor,
            detail={"arms": weights},
        )

    def rollback(
        self, name: str, *, actor: str, reasons: Sequence[str] = (), detail: dict[str, Any] | None = None
    ) -> DeploymentPublic:
        """Send all traffic back to the stable version."""
        with self._db.session() as session:
            row = self._locked(session, name)
            if row.status != "canary":
                raise Conflict(f"deployment '{name}' is {row.status}, not a running canary.", param="name")
            self._settle(
                session,
                row,
                status="rolled_back",
                ref=row.stable_ref,
                actor=actor,
                detail={"reasons": list(reasons) or ["manual rollback"], **(detail or {})},
            )
            return _public(row)

    def promote(
        self, name: str, *, actor: str, reasons: Sequence[str] = (), detail: dict[str, Any] | None = None
    ) -> DeploymentPublic:
        """Send all traffic to the candidate, which becomes the stable version."""
        with self._db.session() as session:
            row = self._locked(session, name)
            if row.status != "canary" or row.candidate_ref is None:
                raise Conflict(f"deployment '{name}' is {row.status}, not a running canary.", param="name")
            self._settle(
                session,
                row,
                status="promoted",
                ref=row.candidate_ref,
                actor=actor,
                detail={"reasons": list(reasons) or ["manual promotion"], **(detail or {})},
            )
            return _public(row)

    def stop(self, name: str, *, actor: str) -> DeploymentPublic:
        """Stop routing: requests for ``name`` follow the registry's default alias again."""
        with self._db.session() as session:
            row = self._locked(session, name)
            if row.status == "stopped":
                return _public(row)
            row.status, row.updated_at = "stopped", utcnow()
            self._event(session, row, action="stopped", actor=actor, detail={})
            return _public(row)

    def apply(
        self,
        name: str,
        verdict: Verdict,
        *,
        step_index: int,
        actor: str = "controller",
        now: datetime | None = None,
    ) -> DeploymentPublic | None:
        """Apply a controller verdict if the deployment is still where the verdict saw it.

        Several gateways run controllers: the one whose transaction comes first applies the change,
        the others find the step moved (or the canary over) and do nothing (None).
        """
        numbers = {
            "candidate": verdict.candidate.model_dump() if verdict.candidate else None,
            "stable": verdict.stable.model_dump() if verdict.stable else None,
        }
        with self._db.session() as session:
            row = self._locked(session, name)
            if row.status != "canary" or row.step_index != step_index or row.candidate_ref is None:
                return None
            detail = {"reasons": verdict.reasons, **numbers}
            if verdict.action == "rollback":
                self._settle(
                    session, row, status="rolled_back", ref=row.stable_ref, actor=actor, detail=detail
                )
            elif verdict.action == "promote":
                self._settle(
                    session, row, status="promoted", ref=row.candidate_ref, actor=actor, detail=detail
                )
            elif verdict.action == "step":
                row.step_index += 1
                share = float(row.steps[row.step_index])
                row.weights = {row.stable_ref: 100 - share, row.candidate_ref: share}
                row.step_started_at = row.updated_at = now or utcnow()
                self._event(session, row, action="step", actor=actor, detail=detail | {"share": share})
            else:
                return None
            return _public(row)

    # -- helpers ---------------------------------------------------------------------------------

    def _start(self, *, name: str, actor: str, detail: dict[str, Any], **fields: Any) -> DeploymentPublic:
        now = utcnow()
        with self._db.session() as session:
            advisory_lock(session, f"deployment:{name}")
            row = session.get(DeploymentRow, name)
            if row is not None and row.status in ("canary", "ab"):
                raise Conflict(
                    f"deployment '{name}' is already running ({row.status}); "
                    "roll it back, promote or stop it first.",
                    param="name",
                )
            if row is None:
                row = DeploymentRow(name=name, created_by=actor, **fields)
                session.add(row)
            else:
                for key, value in fields.items():
                    setattr(row, key, value)
                row.created_by = actor
            row.step_index = 0
            row.started_at = row.step_started_at = row.updated_at = now
            session.flush()
            for ref in row.weights:
                lineage.add_edge(
                    session,
                    source=("model", ref),
                    target=("deployment", name),
                    relation="deployed",
                    actor=actor,
                )
            self._event(session, row, action=f"{row.mode}_started", actor=actor, detail=detail)
            return _public(row)

    def _settle(
        self,
        session: Session,
        row: DeploymentRow,
        *,
        status: str,
        ref: str,
        actor: str,
        detail: dict[str, Any],
    ) -> None:
        previous = row.stable_ref
        row.status = status
        row.weights = {ref: 100.0}
        row.stable_ref = ref
        row.updated_at = utcnow()
        action = "promoted" if status == "promoted" else "rolled_back"
        self._event(session, row, action=action, actor=actor, detail=detail | {"from": previous, "to": ref})

    def _event(
        self, session: Session, row: DeploymentRow, *, action: str, actor: str, detail: dict[str, Any]
    ) -> None:
        session.add(
            DeploymentEventRow(
                deployment=row.name,
                action=action,
                actor=actor[:128],
                weights=dict(row.weights),
                detail=detail,
                at=utcnow(),
            )
        )
        audit.append(
            session,
            actor=actor,
            action=f"deployment.{action}",
            target=row.name,
            detail={"weights": dict(row.weights), **detail},
        )
        session.flush()

    def _row(self, session: Session, name: str) -> DeploymentRow:
        row = session.get(DeploymentRow, name)
        if row is None:
            raise NotFound(f"There is no deployment '{name}'.", param="name")
        return row

    def _locked(self, session: Session, name: str) -> DeploymentRow:
        advisory_lock(session, f"deployment:{name}")
        row = self._row(session, name)
        session.refresh(row)
        return row

    def _version_ref(self, name: str, version: str, *, param: str) -> str:
        """``2`` → ``NAME@2``; ``NAME@2`` or ``NAME:alias`` → the exact version (must exist, chat)."""
        text = str(version).strip()
        ref = f"{name}@{text}" if text.isdigit() else text
        resolved = self._registry.resolve(ref)
        if resolved.kind != "chat":
            raise InvalidRequest(
                f"{resolved.ref} is an embedding model; deployments route chat models.", param=param
            )
        return resolved.ref

    def _stable_ref(self, name: str, stable: str | None, *, candidate_ref: str) -> str:
        """``--stable``, else what the deployment settled on, else what NAME serves now.

        With the default alias ``latest``, registering the candidate made NAME resolve to it; the
        version that served before it is then the highest one below the candidate.
        """
        if stable is not None:
            return self._version_ref(name, stable, param="stable")
        with self._db.session(write=False) as session:
            row = session.get(DeploymentRow, name)
            if row is not None and row.status in ("promoted", "rolled_back"):
                return row.stable_ref
        current = self._registry.resolve(name)
        if current.ref == candidate_ref and current.name == name:
            model = self._registry.get_model(name)
            older = [v for v in model.versions if v.version < current.version and v.kind == "chat"]
            if older and model.default_alias == "latest":
                return older[-1].ref
        return self._version_ref(name, name, param="stable")


def window_start(deployment: DeploymentPublic, now: datetime) -> datetime:
    """The sliding window's start: the last ``window_s`` seconds, never before the canary began."""
    from datetime import timedelta

    return max(now - timedelta(seconds=deployment.thresholds.window_s), deployment.started_at)
