"""The rule-based responder: templated answers picked by keywords (and an intent label).

Matching is on NFKC-normalised, case-folded text with plain substring search, so Chinese keywords
(``退款``, ``营业时间``) match without word segmentation, and full-width/half-width forms agree.
The best rule is the one matching the most keywords; ties go to the higher ``priority``, then name.
Templates are Jinja in a sandbox: an operator's template cannot reach Python objects.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from fnmatch import fnmatchcase

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import select

from stratum.errors import InvalidRequest, NotFound
from stratum.governance import audit
from stratum.routing.schemas import ResponderRule
from stratum.routing.tables import ResponderRuleRow
from stratum.storage import Database, utcnow

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True)
class RuleMatch:
    rule: ResponderRule
    matched: tuple[str, ...]

    def render(self, *, question: str, model: str) -> str:
        template = _ENV.from_string(self.rule.template)
        return template.render(
            question=question, model=model, intent=self.rule.intent or "", keywords=list(self.matched)
        )


def best_match(rules: list[ResponderRule], *, text: str, model: str) -> RuleMatch | None:
    """The rule answering ``text`` for ``model``, or None."""
    haystack = normalise(text)
    best: tuple[int, int, str] | None = None
    found: RuleMatch | None = None
    for rule in rules:
        if rule.models and not any(fnmatchcase(model, glob) for glob in rule.models):
            continue
        matched = tuple(k for k in rule.keywords if normalise(k) in haystack)
        if not matched or (rule.match == "all" and len(matched) != len(rule.keywords)):
            continue
        # Sort key: more keywords matched, then priority, then (reversed) name for a stable order.
        score = (len(matched), rule.priority, rule.name)
        if best is None or score[:2] > best[:2] or (score[:2] == best[:2] and score[2] < best[2]):
            best, found = score, RuleMatch(rule, matched)
    return found


def check_template(template: str) -> None:
    try:
        _ENV.from_string(template).render(question="?", model="m", intent="", keywords=[])
    except TemplateError as exc:
        raise InvalidRequest(f"the template does not render: {exc}", param="template") from exc


def _public(row: ResponderRuleRow) -> ResponderRule:
    return ResponderRule(
        name=row.name,
        intent=row.intent,
        keywords=row.keywords,
        match=row.match,  # type: ignore[arg-type]
        template=row.template,
        models=row.models,
        priority=row.priority,
        updated_at=row.updated_at,
    )


class RuleService:
    """Serves: ``stratum rules …``, ``/admin/v1/rules`` and the responder link of fallback chains."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def set_rule(self, rule: ResponderRule, *, actor: str = audit.LOCAL_ACTOR) -> ResponderRule:
        check_template(rule.template)
        with self._db.session() as session:
            row = session.get(ResponderRuleRow, rule.name)
            if row is None:
                row = ResponderRuleRow(name=rule.name)
                session.add(row)
            row.intent, row.keywords, row.match = rule.intent, list(rule.keywords), rule.match
            row.template, row.models, row.priority = rule.template, list(rule.models), rule.priority
            row.updated_at = utcnow()
            audit.append(
                session,
                actor=actor,
                action="rule.set",
                target=rule.name,
                detail=rule.model_dump(mode="json", exclude={"template", "updated_at"}),
            )
            session.flush()
            return _public(row)

    def list_rules(self) -> list[ResponderRule]:
        with self._db.session(write=False) as session:
            rows = session.execute(select(ResponderRuleRow).order_by(ResponderRuleRow.name)).scalars()
            return [_public(row) for row in rows]

    def remove_rule(self, name: str, *, actor: str = audit.LOCAL_ACTOR) -> None:
        with self._db.session() as session:
            row = session.get(ResponderRuleRow, name)
            if row is None:
                raise NotFound(f"No responder rule named {name!r}.", param="name")
            session.delete(row)
            audit.append(session, actor=actor, action="rule.remove", target=name)

    def answer(self, *, text: str, model: str) -> tuple[ResponderRule, str] | None:
        """The matching rule and its rendered answer, or None when no rule matches."""
        match = best_match(self.list_rules(), text=text, model=model)
        if match is None:
            return None
        return match.rule, match.render(question=text, model=model)
