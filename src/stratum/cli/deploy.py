"""``stratum deploy …`` and ``stratum ab …``: canary releases with automatic rollback, A/B tests.

    stratum deploy NAME --candidate 2 --steps 5,20,100 --interval 10m    start a canary
    stratum deploy status NAME      weights, step, and the health numbers the controller sees now
    stratum deploy history NAME     every start, step, promotion and rollback, with its numbers
    stratum deploy promote|rollback|stop NAME
    stratum deploy list
    stratum ab start NAME --arms 1=50,2=50      a fixed, sticky split
    stratum ab report NAME          per-arm metrics and the significance of the feedback difference

The gateway's controller does the stepping and rolling back; these commands only write the plan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stratum.cli.group import StratumGroup
from stratum.cli.output import CliError, print_fields, print_json, print_note, print_success, print_table
from stratum.cli.store import cli_actor, open_database

if TYPE_CHECKING:
    from stratum.deployments.controller import CanaryController
    from stratum.deployments.schemas import ArmStats, DeploymentPublic
    from stratum.deployments.service import DeploymentService
    from stratum.registry.feedback import FeedbackService
    from stratum.storage.db import Database


class DeployGroup(StratumGroup):
    """``stratum deploy NAME …`` starts a canary; known words (status, history …) are subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["start", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DeployGroup,
    help="Canary releases with automatic rollback to the stable version.",
    no_args_is_help=True,
)
ab_app = typer.Typer(help="A/B tests: a fixed split, sticky per user or key.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
NameArg = Annotated[str, typer.Argument(help="The public model name clients send, e.g. support-bot.")]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, *, option: str) -> float:
    """``10m``, ``30s``, ``1.5h``, ``500ms`` or plain seconds."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise CliError(f"{option} takes a duration such as 30s, 10m or 1h; got {text!r}", exit_code=2)
    return float(match.group(1)) * _UNITS[match.group(2)]


def _numbers(text: str, *, option: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise CliError(
            f"{option} takes comma-separated numbers, e.g. 5,20,100; got {text!r}", exit_code=2
        ) from exc


@contextmanager
def _services() -> Iterator[tuple[Database, DeploymentService, FeedbackService, CanaryController]]:
    from stratum.deployments.controller import CanaryController
    from stratum.deployments.service import DeploymentService
    from stratum.registry.feedback import FeedbackService
    from stratum.registry.service import RegistryService

    with open_database() as db:
        deployments = DeploymentService(db, RegistryService(db))
        feedback = FeedbackService(db)
        yield db, deployments, feedback, CanaryController(db, deployments, feedback)


def _summary(deployment: DeploymentPublic) -> dict[str, Any]:
    return {
        "name": deployment.name,
        "mode": deployment.mode,
        "status": deployment.status,
        "weights": ", ".join(f"{ref} {weight:g}%" for ref, weight in deployment.weights.items()),
        "step": (
            f"{deployment.step_index + 1}/{len(deployment.steps)}" if deployment.mode == "canary" else ""
        ),
        "updated": deployment.updated_at,
    }


def _arm_row(role: str, stats: ArmStats) -> dict[str, Any]:
    return {
        "arm": role,
        "version": stats.ref,
        "requests": stats.requests,
        "error_rate": f"{stats.error_rate:.1%}",
        "p99_ms": f"{stats.p99_ms:.0f}" if stats.p99_ms is not None else "",
        "feedback": stats.feedback,
        "mean_score": f"{stats.mean_score:.3f}" if stats.mean_score is not None else "",
    }


_ARM_COLUMNS = ("arm", "version", "requests", "error_rate", "p99_ms", "feedback", "mean_score")


@app.command("start", hidden=True)
def start(
    name: NameArg,
    candidate: Annotated[str, typer.Option("--candidate", help="Version to release: 2 or NAME@2.")],
    stable: Annotated[
        str | None, typer.Option("--stable", help="Version to compare with (default: what NAME serves now).")
    ] = None,
    steps: Annotated[
        str, typer.Option("--steps", help="Candidate traffic percents, ending at 100.")
    ] = "5,20,100",
    interval: Annotated[
        str, typer.Option("--interval", help="Time per step while healthy (30s, 10m, 1h).")
    ] = "10m",
    window: Annotated[str, typer.Option("--window", help="Sliding window of the health comparison.")] = "5m",
    max_error_rate: Annotated[float, typer.Option(help="Extra error rate tolerated (0.01 = +1 pp).")] = 0.01,
    max_p99_ms: Annotated[float, typer.Option(help="Extra p99 latency tolerated, in ms.")] = 200.0,
    max_quality_drop: Annotated[
        float, typer.Option(help="Drop of the mean feedback score (0-1) tolerated.")
    ] = 0.03,
    min_samples: Annotated[
        int, typer.Option(min=1, help="Requests per arm before errors/latency are judged.")
    ] = 20,
    min_feedback: Annotated[int, typer.Option(min=1, help="Ratings per arm before quality is judged.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Start a canary of NAME: traffic moves to the candidate step by step while it stays healthy."""
    from pydantic import ValidationError

    from stratum.deployments.schemas import Thresholds

    try:
        thresholds = Thresholds(
            error_rate=max_error_rate,
            p99_ms=max_p99_ms,
            quality_drop=max_quality_drop,
            min_samples=min_samples,
            min_feedback=min_feedback,
            window_s=parse_duration(window, option="--window"),
        )
    except ValidationError as exc:
        raise CliError(f"invalid threshold: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    with _services() as (_, deployments, _, _):
        deployment = deployments.start_canary(
            name=name,
            candidate=candidate,
            stable=stable,
            steps=_numbers(steps, option="--steps"),
            interval_s=parse_duration(interval, option="--interval"),
            thresholds=thresholds,
            actor=cli_actor(),
        )
    if as_json:
        print_json(deployment.model_dump(mode="json"))
        return
    print_success(
        f"canary of {name}: {deployment.candidate_ref} gets {deployment.steps[0]:g}% "
        f"against {deployment.stable_ref} (steps {', '.join(f'{s:g}' for s in deployment.steps)}, "
        f"every {deployment.interval_s:g} s while healthy)"
    )
    print_note("The gateway's controller steps and rolls back; watch it with: stratum deploy status " + name)


@app.command("status")
def status(name: NameArg, as_json: JsonFlag = False) -> None:
    """Weights, step, and the health numbers the controller judges right now."""
    with _services() as (_, deployments, _, controller):
        deployment = deployments.get(name)
        verdict = controller.judge(deployment) if deployment.status == "canary" else None
    if as_json:
        print_json(
            {
                **deployment.model_dump(mode="json"),
                "verdict": verdict.model_dump(mode="json") if verdict else None,
            }
        )
        return
    print_fields(_summary(deployment) | {"thresholds": deployment.thresholds.model_dump()}, title=name)
    if verdict is not None and verdict.candidate and verdict.stable:
        print_table(
            [_arm_row("stable", verdict.stable), _arm_row("candidate", verdict.candidate)],
            _ARM_COLUMNS,
            title="sliding window",
        )
        print_note(
            f"next: {verdict.action}" + (f" ({'; '.join(verdict.reasons)})" if verdict.reasons else "")
        )


@app.command("history")
def history(
    name: NameArg,
    limit: Annotated[int, typer.Option("--limit", min=1, help="The last N events.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Every start, step, promotion and rollback of NAME, with the numbers behind it."""
    with _services() as (_, deployments, _, _):
        events = deployments.history(name, limit=limit)
    if as_json:
        print_json([event.model_dump(mode="json") for event in events])
        return
    if not events:
        print_note("no events")
    # Lines, not a table: the reasons and numbers are long and must stay readable in 80 columns.
    for event in events:
        weights = ", ".join(f"{ref} {weight:g}%" for ref, weight in event.weights.items())
        when = event.at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{when}  {event.action:<15} by {event.actor}  →  {weights}")
        for reason in event.detail.get("reasons", []):
            typer.echo(f"    why: {reason}")
        for role in ("stable", "candidate"):
            stats = event.detail.get(role)
            if isinstance(stats, dict):
                p99 = stats.get("p99_ms")
                typer.echo(
                    f"    {role} {stats['ref']}: {stats['requests']} requests, {stats['errors']} errors "
                    f"({stats['error_rate']:.1%})"
                    + (f", p99 {p99:.0f} ms" if p99 is not None else "")
                    + (
                        f", feedback {stats['mean_score']:.3f} over {stats['feedback']}"
                        if stats.get("mean_score") is not None
                        else ""
                    )
                )


@app.command("list")
def list_deployments(as_json: JsonFlag = False) -> None:
    """All deployments and where their traffic goes."""
    with _services() as (_, deployments, _, _):
        found = deployments.list_deployments()
    if as_json:
        print_json([d.model_dump(mode="json") for d in found])
        return
    print_table(
        [_summary(d) for d in found],
        ("name", "mode", "status", "weights", "step", "updated"),
        empty="no deployments",
    )


def _settle(action: str, name: str, as_json: bool) -> None:
    with _services() as (_, deployments, _, _):
        method = {"promote": deployments.promote, "rollback": deployments.rollback, "stop": deployments.stop}[
            action
        ]
        deployment = method(name, actor=cli_actor())
    if as_json:
        print_json(deployment.model_dump(mode="json"))
    else:
        where = (
            "registry default alias" if deployment.status == "stopped" else _summary(deployment)["weights"]
        )
        print_success(f"{name}: {deployment.status} ({where})")


@app.command("promote")
def promote(name: NameArg, as_json: JsonFlag = False) -> None:
    """Send all traffic to the candidate now."""
    _settle("promote", name, as_json)


@app.command("rollback")
def rollback(name: NameArg, as_json: JsonFlag = False) -> None:
    """Send all traffic back to the stable version now."""
    _settle("rollback", name, as_json)


@app.command("stop")
def stop(name: NameArg, as_json: JsonFlag = False) -> None:
    """Stop routing NAME: it follows the registry's default alias again."""
    _settle("stop", name, as_json)


@ab_app.command("start")
def ab_start(
    name: NameArg,
    arms: Annotated[str, typer.Option("--arms", help="VERSION=PERCENT pairs, e.g. 1=50,2=50.")],
    as_json: JsonFlag = False,
) -> None:
    """Split NAME's traffic between versions; each user (or key) always gets the same arm."""
    split: dict[str, float] = {}
    for part in arms.split(","):
        version, sep, share = part.partition("=")
        try:
            split[version.strip()] = float(share)
        except ValueError:
            sep = ""
        if not sep:
            raise CliError(f"--arms takes VERSION=PERCENT pairs such as 1=50,2=50; got {part!r}", exit_code=2)
    with _services() as (_, deployments, _, _):
        deployment = deployments.start_ab(name=name, arms=split, actor=cli_actor())
    if as_json:
        print_json(deployment.model_dump(mode="json"))
    else:
        print_success(f"A/B test of {name}: {_summary(deployment)['weights']}")


@ab_app.command("report")
def ab_report(name: NameArg, as_json: JsonFlag = False) -> None:
    """Per-arm metrics and whether the difference in feedback is significant."""
    from stratum.deployments.abtest import report

    with _services() as (db, deployments, feedback, _):
        result = report(db, deployments, feedback, name)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    rows = [
        _arm_row(f"{chr(ord('A') + i)} ({arm.weight:g}%)", arm.stats) for i, arm in enumerate(result.arms)
    ]
    print_table(rows, _ARM_COLUMNS, title=f"A/B test {name}")
    if result.note:
        print_note(result.note)
        return
    assert result.p_value is not None and result.mean_diff is not None
    typer.echo(
        f"two-proportion z-test (score ≥ 0.5): z = {result.z:.2f}, p = {result.p_value:.4f}\n"
        f"bootstrap mean score B - A: {result.mean_diff:+.3f} "
        f"(95% CI {result.ci_low:+.3f} .. {result.ci_high:+.3f})\n"
        + ("significant at 5%" if result.significant else "not significant at 5%")
    )
