"""``serve(settings)``: start the platform on embedded defaults and print what a user needs."""

from __future__ import annotations

import os
import socket
import threading

import uvicorn

from stratum import __version__
from stratum.errors import Conflict
from stratum.evals.trigger import worker_tasks
from stratum.gateway import logs
from stratum.gateway.app import create_app
from stratum.gateway.state import AppState
from stratum.governance.service import KeyService
from stratum.jobs.worker import run_worker
from stratum.settings import Settings
from stratum.storage.db import Database


class _Server(uvicorn.Server):
    """Prints the banner only once the socket is listening, so "ready" really means ready."""

    banner: str = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit and self.banner:
            print(self.banner, flush=True)


def _listen(host: str, port: int) -> socket.socket:
    """Bind before the (possibly long) start-up, so a busy port fails at once with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Conflict(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(choose another with --port or STRATUM_PORT)"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logs.configure(level=settings.log_level, json_logs=settings.log_json, logs_dir=settings.logs_dir)
    settings.home.mkdir(parents=True, exist_ok=True)
    sock = _listen(settings.host, settings.port)
    if settings.port == 0:  # the OS picked one: report the real port
        settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    db = Database(settings.resolved_database_url)
    db.migrate()
    configured = settings.admin_key.get_secret_value() if settings.admin_key else None
    new_key = KeyService(db).ensure_admin_key(configured)
    db.dispose()
    server: _Server

    def on_ready(state: AppState) -> None:
        server.banner = _banner(state, new_key=new_key, configured=configured is not None)

    app = create_app(settings, on_ready=on_ready)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    # The job worker runs beside the gateway (STRATUM_WORKER); each job is a child process of its own.
    stop_worker = threading.Event()
    worker = threading.Thread(
        target=run_worker, args=(settings, stop_worker, worker_tasks), name="job-worker", daemon=True
    )
    if settings.worker:
        worker.start()
    try:
        server.run(sockets=[sock])
    finally:
        stop_worker.set()
        if worker.is_alive():
            worker.join(timeout=30)


def _banner(state: AppState, *, new_key: str | None, configured: bool) -> str:
    settings = state.settings
    if new_key:
        key_line = f"{new_key}   (shown once, stored hashed: copy it now)"
    elif configured:
        key_line = "from STRATUM_ADMIN_KEY"
    else:
        key_line = "created on first start and not shown again (new one: stratum keys create --role admin)"
    lines = [
        f"Stratum {__version__} ready",
        f"  URL:        http://{settings.host}:{settings.port}/v1",
        f"  Admin key:  {key_line}",
        f"  Home:       {settings.home}",
        "  Models:",
    ]
    for model in state.registry.list_models():
        demo = any(v.source == "demo" for v in model.versions)
        note = "  [DEMO: a toy model trained on a tiny corpus, not a real assistant]" if demo else ""
        lines.append(f"    - {model.name} ({model.kind}){note}")
    return "\n".join(lines)
