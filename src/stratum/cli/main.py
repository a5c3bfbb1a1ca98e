"""The ``stratum`` command: one root group, one module per command group.

    stratum version            what is installed
    stratum serve              run the OpenAI-compatible gateway
    stratum chat MODEL         talk to a model on the running gateway
    stratum models …           the model registry (list, add, show, alias, remove)
    stratum orgs …             organisations (create, list)
    stratum projects …         projects and their limits (create, list, limits)
    stratum keys …             API keys (create, list, revoke), platform-wide or per project
    stratum usage ORG/PROJECT  requests and tokens of a project
    stratum audit verify|list  the hash-chained audit log
    stratum prices set|list    model prices per 1k tokens
    stratum compress …         INT8 quantization, pruning, distillation, ONNX export of a version
    stratum eval …             eval suites per model version, paired comparison, release gates
    stratum data …             datasets: import, versions, transforms, review
    stratum guard …            content safety: scan, policy, sensitive words
    stratum routes …           routes: backends, bursts, fallback chains (set, list, remove)
    stratum rules …            responder rules for fallback chains (set, list, remove)
    stratum queue …            the human hand-off queue (list, show, answer)
    stratum lineage MODEL@V    what produced a version and what it produced
    stratum deploy …           canary releases with automatic rollback (status, history …)
    stratum ab start|report    A/B tests with sticky assignment and a significance report
    stratum kb …               knowledge bases (create, list, ingest, search, eval, export, import)
    stratum jobs …             the job queue (submit, list, show, logs, cancel, retry)
    stratum worker             run a job worker
    stratum feedback list      user feedback with the serving version (low scores, corrections)
    stratum db …               databases for LLM + database QA (add, list, remove, ask)

Failures are turned into one ``error: …`` line by ``StratumGroup`` (see ``group.py``).
"""

from __future__ import annotations

import platform
from typing import Annotated

import typer

from stratum import __version__
from stratum.cli import (
    artifacts,
    audit,
    chat,
    compress,
    data,
    databases,
    deploy,
    evals,
    feedback,
    guard,
    jobs,
    kb,
    keys,
    lineage,
    models,
    prices,
    routing,
    serve,
    tenancy,
    usage,
)
from stratum.cli.group import StratumGroup
from stratum.cli.output import print_json

app = typer.Typer(
    name="stratum",
    cls=StratumGroup,
    help="Stratum: an enterprise large-model platform (OpenAI-compatible gateway, registry, keys).",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    # Locals can hold API keys; never print them in a traceback.
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"stratum {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Stratum: an enterprise large-model platform (OpenAI-compatible gateway, registry, keys).

    State lives under STRATUM_HOME (default ./.stratum); every setting is a STRATUM_* variable.
    """


@app.command("version")
def version(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Print the installed Stratum version."""
    info = {
        "name": "stratum",
        "version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    if as_json:
        print_json(info)
    else:
        typer.echo(f"stratum {__version__} (Python {info['python']}, {info['platform']})")


# Listed in `stratum --help` in this order, after `version`.
app.command("serve")(serve.serve)
app.command("chat")(chat.chat)
models.app.command("move")(artifacts.move)
app.add_typer(models.app, name="models")
app.add_typer(tenancy.orgs_app, name="orgs")
app.add_typer(tenancy.projects_app, name="projects")
app.add_typer(keys.app, name="keys")
app.command("usage")(usage.usage)
app.add_typer(audit.app, name="audit")
app.add_typer(prices.app, name="prices")
app.add_typer(evals.app, name="eval")
app.add_typer(compress.app, name="compress")
app.add_typer(data.app, name="data")
app.add_typer(guard.app, name="guard")
app.add_typer(routing.routes_app, name="routes")
app.add_typer(routing.rules_app, name="rules")
app.add_typer(routing.queue_app, name="queue")
app.command("lineage")(lineage.lineage)
app.add_typer(deploy.app, name="deploy")
app.add_typer(deploy.ab_app, name="ab")
app.add_typer(kb.app, name="kb")
app.add_typer(jobs.app, name="jobs")
app.command("worker")(jobs.worker)
app.add_typer(feedback.app, name="feedback")
app.add_typer(databases.app, name="db")


def run() -> None:
    """Console-script entry point (``stratum = "stratum.cli.main:run"``)."""
    app(prog_name="stratum")
