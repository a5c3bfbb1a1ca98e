"""Editable policy rules in the store, and the cached copy the gateway evaluates on every request."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime

from stratum.errors import NotFound, PolicyDenied
from stratum.governance import audit, repo
from stratum.governance.policy import Check, Decision, PolicyRule, evaluate
from stratum.governance.schemas import Principal
from stratum.governance.tables import PolicyRuleRow
from stratum.storage import Database, utcnow

# Rules edited from the CLI or another process apply within this many seconds (the promise is 2).
RULES_TTL_S = 1.0


def _rule(row: PolicyRuleRow) -> PolicyRule:
    return PolicyRule(name=row.name, effect=row.effect, description=row.description, **row.spec)  # type: ignore[arg-type]


class PolicyService:
    """Serves: the gateway's authorisation (``authorize``/``decide``, rules cached ``RULES_TTL_S``)
    and the admin API/CLI (list, put, delete rules)."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._clock = clock
        self._monotonic = monotonic
        self._cached: list[PolicyRule] = []
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def list_rules(self) -> list[PolicyRule]:
        with self._db.session(write=False) as session:
            return [_rule(row) for row in repo.list_rules(session)]

    def put_rule(self, rule: PolicyRule, *, actor: str = audit.LOCAL_ACTOR) -> PolicyRule:
        """Create the rule, or replace the one with the same name."""
        with self._db.session() as session:
            row = repo.rule_by_name(session, rule.name)
            if row is None:
                row = PolicyRuleRow(
                    id="pol_" + secrets.token_hex(6), name=rule.name, created_at=self._clock()
                )
                session.add(row)
            row.effect, row.description, row.spec = rule.effect, rule.description, rule.spec()
            audit.append(
                session, actor=actor, action="policy.put", target=rule.name, detail=rule.model_dump()
            )
        self._loaded_at = None
        return rule

    def delete_rule(self, name: str, *, actor: str = audit.LOCAL_ACTOR) -> None:
        with self._db.session() as session:
            row = repo.rule_by_name(session, name)
            if row is None:
                raise NotFound(f"No policy rule named {name!r}.", param="name")
            session.delete(row)
            audit.append(session, actor=actor, action="policy.delete", target=name)
        self._loaded_at = None

    def rules(self) -> list[PolicyRule]:
        """The rules, re-read from the store at most every ``RULES_TTL_S`` seconds."""
        with self._lock:
            now = self._monotonic()
            if self._loaded_at is None or now - self._loaded_at >= RULES_TTL_S:
                self._cached = self.list_rules()
                self._loaded_at = now
            return self._cached

    def uses_tags(self) -> bool:
        """Whether any rule looks at model tags (only then does the gateway look them up)."""
        return any(rule.tags or rule.except_tags for rule in self.rules())

    def decide(self, principal: Principal, check: Check) -> Decision:
        return evaluate(principal, check, self.rules())

    def authorize(self, principal: Principal, check: Check) -> None:
        """Raise ``PolicyDenied`` naming the rule unless ``check`` is allowed."""
        decision = self.decide(principal, check)
        if not decision.allowed:
            raise PolicyDenied(decision.reason, rule=decision.rule, param="model" if check.model else None)
