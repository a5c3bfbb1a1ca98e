"""``stratum models move NAME@V --tier cold|hot`` in a subprocess against S3 (moto's server on
loopback) while a server runs: a cold version is refused with the command that brings it back, and
served again once moved back, checksum verified at every destination."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import openai
import pytest
from moto.server import ThreadedMotoServer

from tests.e2e.conftest import ADMIN_KEY, STRATUM, Server

BUCKET = "stratum-e2e-cold"
MESSAGES = [{"role": "user", "content": "冷存储的模型还能回答吗？"}]


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "STRATUM_ARTIFACTS_URL": f"s3://{BUCKET}/模型仓库",
        "STRATUM_ARTIFACTS_ENDPOINT_URL": endpoint,
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    yield env
    moto.stop()


def _stratum(server: Server, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STRATUM, *args], env={**server.env, **env}, capture_output=True, text=True, timeout=180, check=False
    )


def _version(server: Server, name: str) -> dict[str, object]:
    shown = json.loads(server.cli("models", "show", name, "--json").stdout)
    return dict(shown["versions"][-1])


@pytest.mark.slow
def test_move_cold_and_back_through_the_cli_while_serving(
    server: Server, tiny_model_dir: Path, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    source = Path(shutil.copytree(tiny_model_dir, tmp_path / "客服模型"))
    server.cli("models", "add", "archive-bot", "--path", str(source))
    registered = _version(server, "archive-bot")

    cold = _stratum(server, s3_env, "models", "move", "archive-bot@1", "--tier", "cold", "--json")
    assert cold.returncode == 0, cold.stderr
    moved = json.loads(cold.stdout)
    assert moved["tier"] == "cold" and moved["destination"].startswith(f"s3://{BUCKET}/模型仓库/")
    assert moved["checksum"] == registered["checksum"] and moved["files"] >= 3
    assert moved["source_deleted"] is False and source.is_dir()  # registered by path: not ours to delete
    assert _version(server, "archive-bot")["artifact_uri"] == moved["destination"]
    again = _stratum(server, s3_env, "models", "move", "archive-bot@1", "--tier", "cold")
    assert again.returncode == 1 and again.stderr.startswith("error:") and "Traceback" not in again.stderr

    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="archive-bot", messages=MESSAGES, max_tokens=4)
        assert refused.value.code == "model_in_cold_tier"
        assert "stratum models move archive-bot@1 --tier hot" in refused.value.message

        hot = _stratum(server, s3_env, "models", "move", "archive-bot@1", "--tier", "hot")
        assert hot.returncode == 0, hot.stderr
        assert "moved to the hot tier" in hot.stdout and "verified" in hot.stdout
        back = _version(server, "archive-bot")
        assert back["checksum"] == registered["checksum"]
        assert Path(str(back["artifact_uri"])).is_relative_to(server.home)  # now under $STRATUM_HOME
        # The running server picks the move up without a restart (its registry cache lives ~1 s).
        for _ in range(30):
            try:
                reply = client.chat.completions.create(
                    model="archive-bot", messages=MESSAGES, max_tokens=4, temperature=0
                )
                break
            except openai.BadRequestError:
                time.sleep(0.2)
        else:
            pytest.fail("the version moved back to the hot tier is not served")
        assert reply.usage is not None and reply.usage.completion_tokens > 0

    # The cold copy was deleted once the hot copy verified (it was ours).
    listed = boto3.client(
        "s3",
        endpoint_url=s3_env["STRATUM_ARTIFACTS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).list_objects_v2(Bucket=BUCKET)
    assert listed.get("KeyCount", 0) == 0


def test_move_without_a_cold_tier_is_a_one_line_error(server: Server) -> None:
    done = server.cli("models", "move", "tiny@1", "--tier", "cold", check=False)
    assert done.returncode == 1 and done.stderr.startswith("error:")
    assert "STRATUM_ARTIFACTS_URL" in done.stderr and "Traceback" not in done.stderr
