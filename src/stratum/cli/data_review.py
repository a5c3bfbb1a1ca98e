"""``stratum data label`` and ``stratum data review``: the review queue in the terminal.

``label`` pre-labels every row (keyword/regex rules from a JSON file, or an LLM prompt through a
served model) and queues rows below ``--threshold``. ``review`` walks the queue interactively
(a = accept, e = edit, r = reject, s = skip, q = quit), or applies ``--decisions FILE.jsonl``
(one ``{"row_index": 3, "decision": "accept"|"edit"|"reject", "row": {...}, "label": "..."}`` a line)
for scripts and tests. When nothing is pending any more, the decisions make the next version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from stratum.cli.data import JsonFlag, Project, Ref, dataset_service, print_version
from stratum.cli.output import CliError, print_json, print_note
from stratum.settings import Settings


def _chat_completion(base_url: str, api_key: str | None, model: str, timeout: float) -> Callable[[str], str]:
    import httpx

    def complete(prompt: str) -> str:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
        try:
            response = httpx.post(
                f"{base_url.rstrip('/')}/chat/completions", json=body, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {base_url}: {exc}") from exc
        if response.status_code != 200:
            raise CliError(f"{base_url}: {response.status_code} {response.text[:200]}")
        return str(response.json()["choices"][0]["message"]["content"] or "")

    return complete


def label(
    ref: Ref,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help='Keyword labeller: JSON {"label": ["keyword", "re:regex", …]}.'),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="LLM labeller: a served model name.")] = None,
    labels: Annotated[
        str | None, typer.Option("--labels", help="LLM labeller: comma-separated labels.")
    ] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible API root.")] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="STRATUM_API_KEY", show_default=False)
    ] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", min=0.0, max=1.0, help="Queue rows below this.")
    ] = 0.6,
    project: Project = None,
    as_json: JsonFlag = False,
) -> None:
    """Pre-label rows (new version with label/confidence) and queue low-confidence rows for review."""
    from stratum.cli.chat import default_base_url
    from stratum.cli.store import cli_actor
    from stratum.data.review import ChatLabeller, KeywordLabeller, Labeller, ReviewService

    labeller: Labeller
    if (rules is None) == (model is None):
        raise CliError(
            "give either --rules FILE (keyword labeller) or --model NAME --labels A,B (LLM)", exit_code=2
        )
    if rules is not None:
        try:
            spec = json.loads(rules.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CliError(f"--rules {rules}: {exc}") from exc
        if not isinstance(spec, dict):
            raise CliError('--rules is a JSON object {"label": ["keyword", …]}')
        labeller = KeywordLabeller(rules=spec)
    else:
        names = [name.strip() for name in (labels or "").split(",") if name.strip()]
        if not names:
            raise CliError("the LLM labeller needs --labels A,B,…", exit_code=2)
        settings = Settings()
        url = base_url or default_base_url(settings)
        labeller = ChatLabeller(
            labels=names,
            model=str(model),
            complete=_chat_completion(url, api_key, str(model), settings.request_timeout),
        )
    with dataset_service() as datasets:
        version, queued = ReviewService(datasets).label(
            ref, labeller, threshold=threshold, project=project, actor=cli_actor()
        )
    if as_json:
        print_json({"version": version.model_dump(mode="json"), "queued": queued})
        return
    print_version(version, title=f"labelled → {version.ref}")
    typer.echo(f"{queued} rows below {threshold} queued: stratum data review {version.ref}")


def _read_decisions(path: Path) -> list[Any]:
    from pydantic import ValidationError

    from stratum.data.schemas import ReviewDecision

    decisions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            decisions.append(ReviewDecision.model_validate_json(line))
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(p) for p in problem["loc"]) or "(json)"
            raise CliError(f"{path.name}: line {number}, field '{field}': {problem['msg']}") from exc
    return decisions


def _interactive(items: list[Any]) -> list[Any]:
    from stratum.data.schemas import ReviewDecision

    decisions = []
    for position, item in enumerate(items, start=1):
        typer.echo(
            f"\n[{position}/{len(items)}] row {item.row_index}  "
            f"label={item.label}  confidence={item.confidence}"
        )
        typer.echo(json.dumps(item.row, ensure_ascii=False, indent=2))
        choice = typer.prompt("a=accept e=edit r=reject s=skip q=quit", default="a").strip().lower()[:1]
        if choice == "q":
            break
        if choice == "s":
            continue
        if choice == "r":
            decisions.append(ReviewDecision(row_index=item.row_index, decision="reject"))
        elif choice == "e":
            new_label = typer.prompt("label", default=item.label or "").strip() or None
            # $EDITOR on the row as JSON; closing it unchanged keeps the row (a label-only edit).
            edited = click.edit(json.dumps(item.row, ensure_ascii=False, indent=2), extension=".json")
            try:
                row = json.loads(edited) if edited else None
            except json.JSONDecodeError as exc:
                raise CliError(f"the edited row is not valid JSON: {exc.msg}") from exc
            decisions.append(
                ReviewDecision(row_index=item.row_index, decision="edit", row=row, label=new_label)
            )
        else:
            decisions.append(ReviewDecision(row_index=item.row_index, decision="accept"))
    return decisions


def review(
    ref: Ref,
    decisions_file: Annotated[
        Path | None, typer.Option("--decisions", help="JSONL decisions to apply instead of asking.")
    ] = None,
    commit: Annotated[
        bool, typer.Option("--commit/--no-commit", help="Make the next version once nothing is pending.")
    ] = True,
    project: Project = None,
    as_json: JsonFlag = False,
) -> None:
    """Review the queued rows of a labelled version; decisions make the next version."""
    from stratum.cli.store import cli_actor
    from stratum.data.review import ReviewService

    with dataset_service() as datasets:
        reviews = ReviewService(datasets)
        pending = reviews.queue(ref, project=project)
        if decisions_file is not None:
            decisions = _read_decisions(decisions_file)
        elif not pending:
            decisions = []
        else:
            decisions = _interactive(pending)
        if decisions:
            reviews.decide(ref, decisions, project=project, actor=cli_actor())
        left = reviews.queue(ref, project=project)
        version = reviews.commit(ref, project=project, actor=cli_actor()) if commit and not left else None
    result = {
        "decided": len(decisions),
        "pending": len(left),
        "version": version.model_dump(mode="json") if version else None,
    }
    if as_json:
        print_json(result)
        return
    typer.echo(f"{len(decisions)} decisions recorded, {len(left)} rows still pending")
    if version is not None:
        print_version(version, title=f"reviewed → {version.ref}")
    elif left:
        print_note(f"run `stratum data review {ref}` again to finish")
