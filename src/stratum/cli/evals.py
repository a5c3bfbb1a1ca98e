"""``stratum eval run|list|show|compare|gate``: suites scored per model version, release gates.

``run`` loads the version's engine in this process (the embedded engine for local models, the
upstream client for proxied ones), answers the suite greedily and stores per-item scores, so any two
runs of the same suite can be compared later without re-running a model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from stratum.cli.eval_schedule import app as schedule_app
from stratum.cli.output import CliError, print_fields, print_json, print_table
from stratum.cli.store import cli_actor, open_database

app = typer.Typer(help="Evaluate model versions on suites and gate releases.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
SuiteOption = Annotated[
    Path | None, typer.Option("--suite", help="A JSONL suite (generation, multiple_choice, perplexity).")
]
DatasetOption = Annotated[
    str | None,
    typer.Option("--dataset", help="A dataset version (NAME@V) whose held-out split is the suite."),
]
SplitOption = Annotated[
    str, typer.Option("--split", help="With --dataset: the split to answer ('all' for every row).")
]


@app.command("run")
def run(
    model: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME:ALIAS.")],
    suite: SuiteOption = None,
    dataset: DatasetOption = None,
    split: SplitOption = "test",
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", help="Comma-separated: exact_match,f1,rouge_l,bleu,chrf,contains."),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Tokens per answer.")] = 128,
    as_json: JsonOption = False,
) -> None:
    """Answer every item of the suite with MODEL (greedy) and store the scores under its version."""
    from stratum.evals.service import EvalService
    from stratum.registry.service import RegistryService

    with open_database() as db:
        loaded, dataset_ref = load_suite_option(db, suite, dataset, split)
        version = RegistryService(db).resolve(model)
        result = _run(version, loaded, metrics=_split(metrics), max_tokens=max_tokens)
        saved = EvalService(db).record_run(
            model_ref=version.ref, suite=loaded, result=result, actor=cli_actor(), dataset_ref=dataset_ref
        )
    if as_json:
        print_json(saved.model_dump(mode="json"))
        return
    print_fields({"run": saved.id, "model": saved.model_ref, "suite": f"{saved.suite} ({saved.items} items)"})
    print_table([{"metric": k, "mean": f"{v:.4f}"} for k, v in saved.metrics.items()], ["metric", "mean"])


def load_suite_option(db: Any, suite: Path | None, dataset: str | None, split: str) -> tuple[Any, str | None]:
    """The suite named by exactly one of ``--suite FILE`` / ``--dataset REF`` (and its dataset ref)."""
    if (suite is None) == (dataset is None):
        raise CliError("give exactly one of --suite FILE or --dataset NAME@V")
    if suite is not None:
        from stratum.evals.suites import load_suite

        return load_suite(suite), None
    from stratum.data import DatasetService
    from stratum.evals.datasets import dataset_suite
    from stratum.settings import Settings

    assert dataset is not None
    return dataset_suite(DatasetService(db, Settings()), dataset, split=None if split == "all" else split)


def _run(version: Any, suite: Any, *, metrics: list[str] | None, max_tokens: int) -> Any:
    from stratum.evals.runner import ItemResult, RunResult

    if suite.kind == "perplexity":
        from stratum.evals.perplexity import perplexity

        if version.artifact_uri is None or version.source == "upstream":
            raise CliError(f"perplexity needs local weights; {version.ref} has none")
        scored = perplexity(Path(version.artifact_uri), [item.text for item in suite.items])
        return RunResult(
            items=[
                ItemResult(item.id, "", {"nll": nll})
                for item, nll in zip(suite.items, scored.nll_per_text, strict=True)
            ]
        )
    return asyncio.run(_generate(version, suite, metrics=metrics, max_tokens=max_tokens))


async def _generate(version: Any, suite: Any, *, metrics: list[str] | None, max_tokens: int) -> Any:
    """The version served as the gateway would (an adapter on its base engine, an upstream, …)."""
    from stratum.evals.runner import run_suite
    from stratum.registry.engines import serve_version
    from stratum.registry.service import RegistryService
    from stratum.settings import Settings

    with open_database() as db:
        async with serve_version(RegistryService(db), version, Settings()) as engine:
            return await run_suite(engine, suite, metrics=metrics, max_tokens=max_tokens)


@app.command("judge")
def judge(
    candidate: Annotated[str, typer.Argument(help="The candidate: NAME@V or NAME:ALIAS.")],
    baseline: Annotated[str, typer.Option("--baseline", help="The version it is compared with.")],
    judge_model: Annotated[str, typer.Option("--judge", help="The served model that judges.")],
    suite: SuiteOption = None,
    dataset: DatasetOption = None,
    split: SplitOption = "test",
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Tokens per answer.")] = 128,
    as_json: JsonOption = False,
) -> None:
    """Pairwise LLM-as-judge (position-swapped): both versions answer, the judge picks per item.

    Stores a run of the candidate whose per-item ``judge`` score is 1 (won both orders), 0.5 (tie or
    inconsistent) or 0 (lost both); two such runs against the same baseline compare with
    ``eval compare A B --metric judge``.
    """
    from stratum.evals.service import EvalService
    from stratum.evals.suites import Suite
    from stratum.registry.service import RegistryService

    with open_database() as db:
        loaded, dataset_ref = load_suite_option(db, suite, dataset, split)
        if loaded.kind != "generation":
            raise CliError(f"the judge compares free answers; {loaded.name} is a {loaded.kind} suite")
        registry = RegistryService(db)
        cand, base, referee = (registry.resolve(ref) for ref in (candidate, baseline, judge_model))
        result = asyncio.run(_judge(cand.ref, base.ref, referee.ref, loaded, max_tokens=max_tokens))
        named = Suite(
            name=f"judge[{base.ref} by {referee.ref}]:{loaded.name}", kind=loaded.kind, items=loaded.items
        )
        saved = EvalService(db).record_run(
            model_ref=cand.ref, suite=named, result=result, actor=cli_actor(), dataset_ref=dataset_ref
        )
    if as_json:
        print_json(saved.model_dump(mode="json"))
        return
    print_fields({"run": saved.id, "candidate": saved.model_ref, "baseline": base.ref, "judge": referee.ref})
    print_table([{"metric": k, "mean": f"{v:.4f}"} for k, v in saved.metrics.items()], ["metric", "mean"])


async def _judge(candidate: str, baseline: str, judge_ref: str, suite: Any, *, max_tokens: int) -> Any:
    from stratum.evals.judge import judge_suite
    from stratum.evals.runner import run_suite
    from stratum.gateway.pool import ModelPool, default_factory
    from stratum.registry.service import RegistryService
    from stratum.settings import Settings

    with open_database() as db:
        pool = ModelPool(RegistryService(db), default_factory(Settings()))
        try:
            answers = []
            for ref in (candidate, baseline):
                _, engine = await pool.text_engine(ref)
                answers.append(await run_suite(engine, suite, max_tokens=max_tokens))
            _, referee = await pool.text_engine(judge_ref)
            return await judge_suite(referee, suite, candidate=answers[0], baseline=answers[1])
        finally:
            await pool.close()


@app.command("list")
def list_runs(
    model: Annotated[str | None, typer.Option("--model", help="Only runs of this version (NAME@V).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Stored eval runs."""
    from stratum.evals.service import EvalService

    with open_database() as db:
        runs = EvalService(db).list_runs(model_ref=model)
    if as_json:
        print_json([r.model_dump(mode="json") for r in runs])
        return
    rows = [
        {**r.model_dump(), "metrics": ", ".join(f"{k} {v:.3f}" for k, v in r.metrics.items())} for r in runs
    ]
    print_table(
        rows, ["id", "model_ref", "suite", "items", "metrics", "created_at"], empty="no eval runs yet"
    )


@app.command("show")
def show(run_id: Annotated[int, typer.Argument(help="Run id.")], as_json: JsonOption = False) -> None:
    """One run's metrics."""
    from stratum.evals.service import EvalService

    with open_database() as db:
        saved = EvalService(db).get_run(run_id)
    if as_json:
        print_json(saved.model_dump(mode="json"))
    else:
        print_fields(saved.model_dump())


@app.command("compare")
def compare(
    baseline: Annotated[int, typer.Argument(help="Baseline run id.")],
    candidate: Annotated[int, typer.Argument(help="Candidate run id.")],
    metric: Annotated[str, typer.Option("--metric", help="Per-item metric to compare.")] = "f1",
    as_json: JsonOption = False,
) -> None:
    """Paired bootstrap comparison of two runs of the same suite."""
    from dataclasses import asdict

    from stratum.evals.service import EvalService

    with open_database() as db:
        result = EvalService(db).compare(baseline_run=baseline, candidate_run=candidate, metric=metric)
    if as_json:
        print_json(asdict(result))
    else:
        print_fields(asdict(result))


@app.command("gate")
def gate(
    candidate: Annotated[str, typer.Argument(help="The candidate: NAME@V or NAME:ALIAS.")],
    baseline: Annotated[
        str, typer.Option("--baseline", help="The current production version, e.g. NAME:prod.")
    ],
    metric: Annotated[str, typer.Option("--metric", help="The metric the gate reads.")] = "f1",
    max_drop: Annotated[float, typer.Option("--max-drop", help="Largest allowed relative drop.")] = 0.03,
    min_items: Annotated[int, typer.Option("--min-items", min=1, help="Fewer items fail the gate.")] = 30,
    rule: Annotated[
        str, typer.Option("--rule", help="no_significant_drop or strict.")
    ] = "no_significant_drop",
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 128,
    suite: SuiteOption = None,
    dataset: DatasetOption = None,
    split: SplitOption = "test",
    as_json: JsonOption = False,
) -> None:
    """Score both versions on the suite (reusing stored runs of the same suite) and decide the gate.

    Exits 1 when the gate fails, so a release script can stop on it.
    """
    from stratum.evals.service import EvalService
    from stratum.evals.stats import GateConfig
    from stratum.registry.service import RegistryService

    config = GateConfig(metric=metric, max_drop=max_drop, min_items=min_items, rule=rule)  # type: ignore[arg-type]
    with open_database() as db:
        loaded, dataset_ref = load_suite_option(db, suite, dataset, split)
        registry, evals = RegistryService(db), EvalService(db)
        run_ids = []
        for ref in (baseline, candidate):
            version = registry.resolve(ref)
            existing = [
                r
                for r in evals.list_runs(model_ref=version.ref)
                if r.suite_digest == loaded.digest and metric in r.metrics
            ]
            if existing:
                run_ids.append(existing[-1].id)
                continue
            result = _run(
                version,
                loaded,
                metrics=[metric] if metric not in ("nll", "accuracy") else None,
                max_tokens=max_tokens,
            )
            run_ids.append(
                evals.record_run(
                    model_ref=version.ref,
                    suite=loaded,
                    result=result,
                    actor=cli_actor(),
                    dataset_ref=dataset_ref,
                ).id
            )
        saved, _ = evals.gate(
            baseline_run=run_ids[0], candidate_run=run_ids[1], config=config, actor=cli_actor()
        )
    if as_json:
        print_json(saved.model_dump(mode="json"))
    else:
        typer.echo(
            f"gate {'PASSED' if saved.passed else 'FAILED'}: {saved.candidate_ref} vs {saved.baseline_ref}"
        )
        typer.echo(saved.reason)
    if not saved.passed:
        raise typer.Exit(1)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None
