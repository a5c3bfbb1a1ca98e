"""The root command group: the one place where failures become a one-line ``error: …`` and an exit code.

Commands just raise (``StratumError`` from services, ``CliError`` from the CLI, ``OSError``, a bad
setting, a database error, a usage error from the parser); ``StratumGroup`` catches them while
parsing and while invoking, prints one line on stderr and exits non-zero. Nothing here is specific
to a command, so no command needs its own try/except.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from stratum.cli.output import CliError, print_error
from stratum.errors import StratumError
from stratum.settings import Settings

# Exit codes: 1 for a failure at run time, 2 for bad usage (click's convention).
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _database_error_message(exc: BaseException) -> str | None:
    """A one-line message for SQLAlchemy errors, without importing SQLAlchemy on the fast path."""
    module = type(exc).__module__
    if not module.startswith("sqlalchemy"):
        return None
    # str() of a SQLAlchemy error carries the SQL and a help link on later lines; the first is enough.
    detail = getattr(exc, "orig", None) or exc
    first = str(detail).strip().splitlines()[0] if str(detail).strip() else type(exc).__name__
    return f"database: {first}"


def _validation_message(exc: ValidationError) -> str:
    """``Settings()`` failures name the STRATUM_* variable to fix; other models name the field."""
    settings = exc.title == Settings.__name__
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "value"
        problems.append(f"{'STRATUM_' + field.upper() if settings else field}: {error['msg']}")
    if settings:
        return f"invalid setting {'; '.join(problems)}"
    return f"invalid {exc.title}: {'; '.join(problems)}"


def _usage_message(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"{exc.format_message()}{hint}"


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Translate every expected failure into ``error: …`` on stderr plus ``typer.Exit``."""
    try:
        yield
    except typer.Exit:
        raise
    except StratumError as exc:
        print_error(exc.message)
        raise typer.Exit(EXIT_FAILURE) from exc
    except CliError as exc:
        print_error(exc.message)
        raise typer.Exit(exc.exit_code) from exc
    except ValidationError as exc:
        print_error(_validation_message(exc))
        raise typer.Exit(EXIT_FAILURE) from exc
    except typer.TyperException as exc:
        # Parser errors (unknown option, bad choice, missing argument). ``NoArgsIsHelpError`` is the
        # parser's way of showing help for a bare group: leave that to Typer.
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise
        print_error(_usage_message(exc))
        raise typer.Exit(getattr(exc, "exit_code", EXIT_USAGE)) from exc
    except ImportError as exc:
        # A missing optional extra: its message names the `pip install 'stratum[extra]'` to run.
        print_error(str(exc))
        raise typer.Exit(EXIT_FAILURE) from exc
    except OSError as exc:
        print_error(f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc))
        raise typer.Exit(EXIT_FAILURE) from exc
    except Exception as exc:
        message = _database_error_message(exc)
        if message is None:
            raise  # a bug: let Typer show the traceback rather than hide it
        print_error(message)
        raise typer.Exit(EXIT_FAILURE) from exc


class StratumGroup(TyperGroup):
    """Typer's group with failures rendered as one line (see the module docstring)."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with one_line_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with one_line_errors():
            return super().invoke(ctx)
