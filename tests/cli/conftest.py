"""CLI test fixtures: isolated state, a Typer runner, the real console script, a fake OpenAI server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from typer.testing import CliRunner

# Variables that would let the developer's own setup leak into a test.
_ISOLATED_VARS = (
    "STRATUM_DATABASE_URL",
    "STRATUM_HOST",
    "STRATUM_PORT",
    "STRATUM_API_KEY",
    "OPENAI_API_KEY",
    "STRATUM_ADMIN_KEY",
)
# Seconds a console-script run may take: interpreter start-up plus migrating a fresh SQLite file.
SUBPROCESS_TIMEOUT = 60
# Seconds to wait for the fake server to listen; uvicorn needs well under one.
SERVER_START_TIMEOUT = 10

RunStratum = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(autouse=True)
def stratum_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point STRATUM_HOME at a temp dir and run from another one (Settings also reads ./.env).

    tests/conftest.py isolates STRATUM_* too; this fixture also clears OPENAI_API_KEY (read by
    `stratum chat`), changes directory, and hands tests the home path.
    """
    home = tmp_path / "home"
    monkeypatch.setenv("STRATUM_HOME", str(home))
    for name in _ISOLATED_VARS:
        monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return home


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def run_stratum() -> RunStratum:
    """Run the installed ``stratum`` console script with this test's environment and UTF-8 I/O."""
    script = Path(sys.executable).parent / "stratum"
    if not script.exists():
        pytest.fail(f"{script} is missing: install the package (pip install -e .)")

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1", "COLUMNS": "200"}
        return subprocess.run(
            [str(script), *args],
            input=input,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )

    return run


@pytest.fixture
def invoke_stratum(runner: CliRunner) -> RunStratum:
    """``run_stratum``'s in-process twin: the same command through CliRunner, the same result shape.

    For tests about what a command does rather than the console script: each subprocess starts an
    interpreter and imports torch (~1 s, several under load). Every CLI area keeps a real subprocess
    test too. An exception that escaped the command is appended to stderr as the traceback a
    subprocess would print, so ``"Traceback" not in stderr`` checks still catch it.
    """
    # Imported here: collecting this conftest should not import the whole CLI.
    from stratum.cli.main import app

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = runner.invoke(app, list(args), input=input, prog_name="stratum")
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += "".join(traceback.format_exception(result.exception))
        return subprocess.CompletedProcess(["stratum", *args], result.exit_code, result.stdout, stderr)

    return run


# -- a tiny OpenAI-compatible server for `stratum chat` ------------------------------------------
#
# Streams fixed Chinese deltas over SSE. Behaviour by model name, so each test picks a path
# without configuring the server:
#     any other name   REPLY_DELTAS (cut to max_tokens), then ``data: [DONE]``
#     "missing"        404 with an OpenAI error body
#     "broken"         one delta, then an error event inside the stream
#     "plain"          ignores ``stream`` and answers with one JSON completion
# A wrong or missing bearer token gets 401 with an OpenAI error body. Request bodies are recorded.


def _error(status: int, message: str, type_: str, code: str | None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def _chunk(content: str | None, finish_reason: str | None = None) -> str:
    delta = {"content": content} if content is not None else {}
    chunk = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


@dataclass
class FakeOpenAI:
    api_key: str = "sk-test-0123456789"
    deltas: tuple[str, ...] = ("你好", "，", "我是", "测试模型", "。")
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    @property
    def reply(self) -> str:
        return "".join(self.deltas)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API key provided.", "authentication_error", "invalid_api_key")
        model = body.get("model")
        if model == "missing":
            return _error(
                404, "The model 'missing' does not exist.", "invalid_request_error", "model_not_found"
            )
        if model == "plain":
            message = {"role": "assistant", "content": self.reply}
            return JSONResponse({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
        return StreamingResponse(self._events(body), media_type="text/event-stream")

    async def _events(self, body: dict[str, Any]) -> AsyncIterator[str]:
        yield ": keep-alive comment, ignored by clients\n\n"
        if body.get("model") == "broken":
            yield _chunk(self.deltas[0])
            yield 'data: {"error": {"message": "engine crashed", "type": "engine_error", "code": null}}\n\n'
            return
        limit = body.get("max_tokens")
        deltas = self.deltas[:limit] if limit else self.deltas
        for delta in deltas:
            yield _chunk(delta)
        yield _chunk(None, "length" if limit and limit < len(self.deltas) else "stop")
        yield "data: [DONE]\n\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A FakeOpenAI served by uvicorn on a free port in a background thread; ``.url`` is its /v1."""
    fake = FakeOpenAI()
    port = free_port()
    config = uvicorn.Config(
        fake.app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",  # skip importing websockets and its deprecation warnings
        http="h11",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake OpenAI server did not start")
        time.sleep(0.01)
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    server.should_exit = True
    thread.join(timeout=SERVER_START_TIMEOUT)


@pytest.fixture
def unused_url() -> str:
    """A /v1 URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/v1"
