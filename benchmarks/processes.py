"""Starting and always stopping the processes a benchmark talks to: the mock and `stratum serve`.

Every process runs on 127.0.0.1 on a port picked free by the OS, writes its output to a log file (a
pipe nobody drains would block the server once its buffer fills) and is stopped by its own pid when
the ``with`` block ends, however it ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

# Long enough for `stratum serve` to import torch and load the demo model on a busy 2-core box.
READY_TIMEOUT_S = 180.0
# uvicorn's graceful shutdown is configured at 5 s in the gateway; then we stop asking.
STOP_TIMEOUT_S = 15.0
Progress = Callable[[str], None]


def free_port() -> int:
    """A port the OS says is free on loopback now (tiny race until the server binds it; fine here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stratum_command() -> str:
    """The `stratum` console script of the interpreter running the benchmark (same venv)."""
    beside = Path(sys.executable).parent / "stratum"
    found = str(beside) if beside.is_file() else shutil.which("stratum")
    if not found:
        raise RuntimeError("the `stratum` console script is not installed in this environment")
    return found


def stratum_env(home: Path, **settings: str) -> dict[str, str]:
    """This environment minus any STRATUM_* the caller had set, plus ``home`` and ``settings``.

    Inherited STRATUM_* variables (a developer's real admin key or database URL) must not leak into
    the throwaway servers, and must not change what is measured. The response cache is off unless
    a caller asks for it: repeated greedy prompts would otherwise be answered by the cache, not the
    engine.
    """
    settings.setdefault("cache", "false")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUM_")}
    env["STRATUM_HOME"] = str(home)
    env.update({f"STRATUM_{key.upper()}": value for key, value in settings.items()})
    # The server prints its banner with print(); unbuffered output keeps the log file current.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_checked(command: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
    """Run a short command (e.g. `stratum models add`), failing with its output if it fails."""
    with log_path.open("ab") as log:
        result = subprocess.run(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{tail(log_path)}")


@contextmanager
def running(
    command: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    ready_url: str,
    name: str,
    progress: Progress,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command``, wait until ``ready_url`` answers 200, yield the process, then stop it."""
    log = log_path.open("ab")
    # cwd is a temp dir: pydantic-settings reads ./.env, and the checkout's must not apply.
    process = subprocess.Popen(command, env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.perf_counter()
        _wait_ready(process, ready_url, log_path=log_path, name=name)
        progress(
            f"{name} ready on {ready_url} after {time.perf_counter() - started:.1f} s (pid {process.pid})"
        )
        yield process
    finally:
        _stop(process)
        log.close()


def _wait_ready(process: subprocess.Popen[bytes], url: str, *, log_path: Path, name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail(log_path)}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
    raise RuntimeError(f"{name} was not ready within {READY_TIMEOUT_S:.0f} s:\n{tail(log_path)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful: the gateway closes its engines), then SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc (NaN where there is no /proc).

    CPU per request is far less sensitive to a noisy neighbour than wall-clock latency, so it is the
    steadier number for "what does the gateway cost".
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    # Fields after the parenthesised command name (which may itself contain spaces): state is the
    # first, utime and stime are fields 14 and 15 of the full line.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
