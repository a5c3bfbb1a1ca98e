"""One place where failures become OpenAI-shaped JSON: ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from stratum.errors import Overloaded, StratumError

log = logging.getLogger(__name__)


def error_response(error: StratumError) -> JSONResponse:
    headers = {"retry-after": str(error.retry_after)} if isinstance(error, Overloaded) else None
    return JSONResponse(error.to_dict(), status_code=error.status_code, headers=headers)


async def _stratum_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StratumError)
    response = error_response(exc)
    # A failure of a chosen version names it, so canary errors can be attributed by clients too.
    version = getattr(getattr(request.state, "context", None), "model_version", None)
    if version is not None:
        response.headers["x-stratum-model-version"] = version
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = first.get("msg", "invalid request body")
    if first.get("type") == "json_invalid":
        message, param = "the request body is not valid JSON", None
    elif param:
        message = f"{param}: {message}"
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return JSONResponse(body, status_code=400)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    body = {
        "error": {"message": "internal server error", "type": "internal_error", "param": None, "code": None}
    }
    return JSONResponse(body, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StratumError, _stratum_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
