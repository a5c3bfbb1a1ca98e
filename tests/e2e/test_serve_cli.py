"""`stratum serve` failure modes a user meets on the command line."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.e2e.conftest import STRATUM


def test_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {**os.environ, "STRATUM_HOME": str(tmp_path / "家"), "STRATUM_DEMO_MODEL": "false"}
        result = subprocess.run(
            [STRATUM, "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0]


def test_invalid_setting_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "STRATUM_HOME": str(tmp_path), "STRATUM_MAX_BATCH": "lots"}
    result = subprocess.run(
        [STRATUM, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "STRATUM_MAX_BATCH" in result.stderr
