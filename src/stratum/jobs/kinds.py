"""Job kinds, by name, as dotted paths: ``stratum.jobs`` never imports the code that runs them.

A kind names a ``run(context)`` function executed in a job's child process, and optionally a
``validate(config) -> dict`` called at submit time (it must be cheap: no torch), so a bad config is
a 400 at submit rather than a failed job later. A kind whose jobs must not run two at a time on
the same thing also names an ``exclusive(config) -> str`` giving the job's exclusive key
(``JobSubmit.exclusive_key``): the store then refuses a second queued or running job with that key,
whichever route submitted it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stratum.errors import InvalidRequest


@dataclass(frozen=True)
class JobKind:
    run: str
    validate: str | None = None
    exclusive: str | None = None


BUILTIN_KINDS: Mapping[str, JobKind] = {
    "sft": JobKind("stratum.training.sft:run", "stratum.training.config:validate_sft"),
    "dpo": JobKind("stratum.training.dpo:run", "stratum.training.config:validate_dpo"),
    "sleep": JobKind("stratum.jobs.builtin:sleep", "stratum.jobs.builtin:validate_sleep"),
    "eval": JobKind("stratum.evals.job:run", "stratum.evals.job:validate"),
    "kb_ingest": JobKind(
        "stratum.knowledge.ingest_job:run",
        "stratum.knowledge.ingest_job:validate",
        "stratum.knowledge.ingest_job:exclusive",
    ),
}


def load(path: str) -> Callable[..., Any]:
    """``package.module:function`` → the function."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"a job entry point is 'package.module:function', got {path!r}")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{path} is not callable")
    return function  # type: ignore[no-any-return]


def validate(kinds: Mapping[str, JobKind], kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The normalised config of a ``kind`` job, or ``InvalidRequest`` naming what is wrong."""
    spec = kinds.get(kind)
    if spec is None:
        raise InvalidRequest(
            f"unknown job kind {kind!r}; known kinds: {', '.join(sorted(kinds))}", param="kind"
        )
    if spec.validate is None:
        return config
    try:
        checker = load(spec.validate)
    except ImportError as exc:
        raise InvalidRequest(
            f"job kind {kind!r} needs an extra that is not installed ({exc}); "
            "install it with: pip install 'stratum[train]'",
            param="kind",
        ) from exc
    normalised: dict[str, Any] = checker(config)
    return normalised


def exclusive_key(kinds: Mapping[str, JobKind], kind: str, config: dict[str, Any]) -> str | None:
    """The exclusive key a ``kind`` derives from its (validated) ``config``, or ``None``."""
    spec = kinds.get(kind)
    if spec is None or spec.exclusive is None:
        return None
    key: str | None = load(spec.exclusive)(config)
    return key
