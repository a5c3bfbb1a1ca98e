"""End-to-end: the real ``stratum`` console script, a real server process on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.tiny import build_tiny_llama

ADMIN_KEY = "sk-stm-e2e-admin-key-0123456789abcdef"
STRATUM = str(Path(sys.executable).parent / "stratum")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    home: Path
    env: dict[str, str]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [STRATUM, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"stratum {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(home: Path, *, extra_env: dict[str, str] | None = None, timeout: float = 180) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "STRATUM_HOME": str(home),
        "STRATUM_PORT": str(port),
        "STRATUM_HOST": "127.0.0.1",
        "STRATUM_ADMIN_KEY": ADMIN_KEY,
        "STRATUM_DEMO_MODEL": "false",
        "STRATUM_LOG_JSON": "true",
        "HF_HUB_OFFLINE": "1",
        # Lets a model registered with --api-key-env E2E_UPSTREAM_KEY call this very server as upstream.
        "E2E_UPSTREAM_KEY": ADMIN_KEY,
        **(extra_env or {}),
    }
    home.mkdir(parents=True, exist_ok=True)
    log = home / "server-output.txt"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [STRATUM, "serve"], env=env, stdout=sink, stderr=subprocess.STDOUT, text=True
        )
    server = Server(process=process, port=port, home=home, env=env, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise AssertionError(f"server not ready after {timeout}s:\n{server.output()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("e2e-model") / "tiny-llama")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Server]:
    """One server for the read-mostly e2e tests: a tiny local Llama and the bundled encoder."""
    home = tmp_path_factory.mktemp("e2e-home")
    env = {**os.environ, "STRATUM_HOME": str(home)}
    subprocess.run(
        [STRATUM, "models", "add", "tiny", "--path", str(tiny_model_dir)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # The response cache would answer repeated greedy requests without the engine; these tests
    # observe the engine (metrics, cancellation, seeds). test_routing_live covers the cache.
    # The embedded worker's eval-schedule poll is off: test_eval_cli_live makes a schedule due and
    # runs it from the CLI, which a worker poll landing in between would take first (a race seen
    # under load). test_schedule_worker covers the worker path with a server of its own.
    running = start_server(home, extra_env={"STRATUM_CACHE": "false", "STRATUM_EVAL_SCHEDULE_POLL": "0"})
    yield running
    stop_server(running)


@dataclass
class KbPlatform:
    """A running server for the knowledge-base e2e tests and a developer key of its project."""

    server: Server
    key: str
    project: str = "acme/bot"


@pytest.fixture(scope="session")
def kb_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KbPlatform]:
    """One server for the knowledge-base walks (test_kb_live, test_kb_upload_live), each with KBs of
    its own: project acme/bot, the bundled encoders, the tiny Llama as ``tiny`` with a context long
    enough for a grounded prompt (the shared server's has 256 positions), and private URLs allowed
    for the URL-ingest test's local site. A server per test would cost a start-up each (~10 s)."""
    home = tmp_path_factory.mktemp("kb-home")
    model = build_tiny_llama(tmp_path_factory.mktemp("kb-model") / "tiny", context_length=2048)
    # One thread per process: the CLI ingests and the server share two cores.
    server = start_server(home, extra_env={"OMP_NUM_THREADS": "1", "STRATUM_KB_FETCH_ALLOW_PRIVATE": "true"})
    try:
        server.cli("models", "add", "tiny", "--path", str(model))
        server.cli("orgs", "create", "acme")
        server.cli("projects", "create", "acme/bot")
        created = server.cli("keys", "create", "acme/bot", "--role", "developer", "--json")
        yield KbPlatform(server=server, key=json.loads(created.stdout)["key"])
    finally:
        stop_server(server)
