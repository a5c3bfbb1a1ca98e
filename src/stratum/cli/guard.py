"""``stratum guard scan|show|set|words``: the content guard (PII, sensitive words, injection).

``scan`` runs the detectors on a text so an operator can test a policy before enabling it; the
others read and change a project's policy (or, without ``--project``, the platform default) in the
store the running gateway reads, which applies a change within a second.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stratum.cli.output import CliError, print_fields, print_json, print_table
from stratum.cli.store import cli_actor, open_database

if TYPE_CHECKING:
    from stratum.governance.guard.policy import GuardSettings
    from stratum.governance.guard.service import GuardService

app = typer.Typer(
    help="Content safety: PII masking, sensitive words and the prompt-injection guard, per project.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", metavar="ORG/PROJECT", help="The project (default: the platform default)."),
]
# Texts read from a file or stdin are capped like the API's (a scan is for testing, not bulk jobs).
_MAX_SCAN_CHARS = 1_000_000


@contextmanager
def guard_service() -> Iterator[GuardService]:
    from stratum.governance.guard.service import GuardService

    with open_database() as db:
        yield GuardService(db)


def _text(text: str | None, file: Path | None) -> str:
    if text is not None and file is not None:
        raise CliError("give TEXT or --file, not both", exit_code=2)
    if file is not None:
        try:
            content = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {file}: {exc}", exit_code=2) from exc
    elif text is None or text == "-":
        content = sys.stdin.read()
    else:
        content = text
    if len(content) > _MAX_SCAN_CHARS:
        raise CliError(f"the text has {len(content)} characters; scan at most {_MAX_SCAN_CHARS}", exit_code=2)
    return content


@app.command("scan")
def scan(
    text: Annotated[str | None, typer.Argument(help="The text to scan ('-' or nothing: stdin).")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Scan this UTF-8 file.")] = None,
    project: ProjectOpt = None,
    types: Annotated[
        str | None, typer.Option("--types", help="Comma-separated PII types (default: all).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the PII entities (type, start, end, text), the masked text, sensitive words, the
    injection score and what the policy would decide for this text as a prompt."""
    content = _text(text, file)
    wanted = [t.strip() for t in types.split(",") if t.strip()] if types else None
    with guard_service() as service:
        result = service.scan(content, project=project, types=wanted)
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    typer.echo(result.masked)
    print_table(
        [e.model_dump() for e in result.entities],
        ("type", "start", "end", "text"),
        title="PII entities",
        empty="no PII found",
    )
    if result.words:
        print_table([w.model_dump() for w in result.words], ("word", "start", "end"), title="sensitive words")
    signals = ", ".join(result.injection_signals) or "none"
    typer.echo(f"injection score {result.injection_score:.2f} ({signals})")
    typer.echo(f"decision: {result.decision}" + (f" ({result.rule})" if result.rule else ""))


def _show(settings: GuardSettings, as_json: bool, title: str) -> None:
    if as_json:
        print_json(settings.model_dump(mode="json"))
        return
    policy = settings.policy
    fields: dict[str, Any] = {"project": settings.project}
    fields.update({f"prompt {k}": v for k, v in policy.prompt_pii.model_dump().items()})
    fields.update({f"response {k}": v for k, v in policy.response_pii.model_dump().items()})
    fields.update(
        {
            "words action": policy.words_action,
            "injection": f"{policy.injection} (threshold {policy.injection_threshold})",
            "words": len(settings.words),
        }
    )
    print_fields(fields, title=title)


@app.command("show")
def show(project: ProjectOpt = None, as_json: JsonFlag = False) -> None:
    """Show a project's guard policy and its number of sensitive words."""
    with guard_service() as service:
        settings = service.get(project)
    _show(settings, as_json, "guard policy")


def _actions(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for value in values:
        kind, sep, action = value.partition("=")
        if not sep:
            raise CliError(f"{option} takes TYPE=ACTION (e.g. id_card=block), got {value!r}", exit_code=2)
        out[kind.strip()] = action.strip()
    return out


@app.command("set")
def set_policy(
    project: ProjectOpt = None,
    prompt: Annotated[
        list[str] | None, typer.Option("--prompt", help="TYPE=mask|block|allow for prompts (repeatable).")
    ] = None,
    response: Annotated[
        list[str] | None, typer.Option("--response", help="TYPE=mask|block|allow for responses (repeatable).")
    ] = None,
    words: Annotated[
        str | None, typer.Option("--words", help="Sensitive words: block, flag or mask.")
    ] = None,
    injection: Annotated[str | None, typer.Option("--injection", help="block, flag or off.")] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", min=0.0, max=1.0, help="Injection score that triggers.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a guard policy (options left out keep their value)."""
    from pydantic import ValidationError

    from stratum.governance.guard.policy import GuardPolicyUpdate

    try:
        update = GuardPolicyUpdate.model_validate(
            {
                "prompt_pii": _actions(prompt, "--prompt") if prompt else None,
                "response_pii": _actions(response, "--response") if response else None,
                "words_action": words,
                "injection": injection,
                "injection_threshold": threshold,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CliError(f"{where}: {first['msg']}", exit_code=2) from exc
    with guard_service() as service:
        settings = service.update_policy(project, update, actor=cli_actor())
    _show(settings, as_json, "guard policy updated")


@app.command("words")
def words(
    project: ProjectOpt = None,
    add: Annotated[list[str] | None, typer.Option("--add", help="Add a sensitive word (repeatable).")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="Remove a word (repeatable).")] = None,
    add_file: Annotated[
        Path | None, typer.Option("--add-file", help="Add the words of a UTF-8 file, one per line.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List a project's sensitive words, or add and remove some."""
    from stratum.governance.guard.policy import WordsChange

    added = list(add or [])
    if add_file is not None:
        try:
            added += add_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {add_file}: {exc}", exit_code=2) from exc
    with guard_service() as service:
        if added or remove:
            settings = service.change_words(
                project, WordsChange(add=added, remove=list(remove or [])), actor=cli_actor()
            )
        else:
            settings = service.get(project)
    if as_json:
        print_json({"project": settings.project, "words": settings.words})
        return
    print_table([{"word": w} for w in settings.words], ("word",), title="sensitive words", empty="no words")
