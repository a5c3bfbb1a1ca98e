"""``stratum serve``: run the gateway in the foreground."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stratum.settings import Settings

# Valid TCP ports; 0 lets the OS pick a free one.
_MIN_PORT, _MAX_PORT = 0, 65535


def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default STRATUM_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=_MIN_PORT,
            max=_MAX_PORT,
            help="Port to bind (default STRATUM_PORT or 8000).",
        ),
    ] = None,
) -> None:
    """Run the OpenAI-compatible gateway until Ctrl-C.

    Every other setting comes from STRATUM_* environment variables (or .env).
    """
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    # Keyword arguments outrank environment variables in pydantic-settings, and are validated.
    settings = Settings(**overrides)

    # Imported here: the gateway pulls in FastAPI, uvicorn and torch, which `stratum --help`,
    # `stratum keys …` and friends should not wait for.
    from stratum.gateway.server import serve as serve_gateway

    serve_gateway(settings)
