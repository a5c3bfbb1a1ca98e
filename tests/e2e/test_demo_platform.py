"""What a new user meets: `stratum serve` on embedded defaults with the demo model, then chat."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from stratum.engine.demo import demo_model_dir
from tests.e2e.conftest import ADMIN_KEY, STRATUM, Server, start_server, stop_server


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory, demo_home: Path) -> Iterator[Server]:
    # The session's build of the demo model is copied in: training it again here would cost ~30 s.
    # The server still checks it against the shipped recipe on start-up (the banner test sees the
    # cached-build line); building on a first start is tested in tests/engine/test_demo.py.
    home = tmp_path_factory.mktemp("demo-server-home")
    shutil.copytree(demo_model_dir(demo_home), demo_model_dir(home))
    running = start_server(home, extra_env={"STRATUM_DEMO_MODEL": "true"})
    yield running
    stop_server(running)


def test_banner_lists_url_and_models(demo_server: Server) -> None:
    output = demo_server.output()
    assert "ready" in output
    assert demo_server.base_url in output
    assert "stratum-demo (chat)" in output and "DEMO" in output
    assert "demo model: using the cached build" in output  # the copied build passed the recipe check
    assert "multilingual-e5-small (embedding)" in output
    assert "from STRATUM_ADMIN_KEY" in output


def test_sdk_chat_with_the_demo_model(demo_server: Server) -> None:
    with openai.OpenAI(base_url=demo_server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="stratum-demo",
            messages=[{"role": "user", "content": "Stratum 是什么？"}],
            max_tokens=48,
            seed=1,
        )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens >= 1


def test_stratum_chat_streams_a_reply(demo_server: Server) -> None:
    result = subprocess.run(
        [
            STRATUM,
            "chat",
            "stratum-demo",
            "--message",
            "What is Stratum?",
            "--max-tokens",
            "32",
            "--base-url",
            demo_server.base_url,
            "--api-key",
            ADMIN_KEY,
        ],
        env=demo_server.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_generated_admin_key_is_shown_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without STRATUM_ADMIN_KEY the first start prints a new key; a restart does not show it again."""
    home = tmp_path_factory.mktemp("keygen-home")
    env = {"STRATUM_ADMIN_KEY": "", "STRATUM_EMBEDDINGS_MODEL": "false"}
    first = start_server(home, extra_env=env)
    stop_server(first)
    shown = [line for line in first.output().splitlines() if "Admin key:" in line]
    assert shown and "sk-stm-" in shown[0] and "shown once" in shown[0]
    key = shown[0].split("Admin key:")[1].split()[0]
    second = start_server(home, extra_env=env)
    try:
        assert key not in second.output()
        with openai.OpenAI(base_url=second.base_url, api_key=key, max_retries=0) as client:
            assert client.models.list().data == []
    finally:
        stop_server(second)
