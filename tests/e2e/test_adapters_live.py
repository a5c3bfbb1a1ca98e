"""LoRA adapters hot-loaded on a running server: registered with the CLI, requested by name with
the ``openai`` SDK, answering exactly as plain peft does, replaced and removed without a restart."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server
from tests.tiny import build_tiny_lora, reference_greedy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning"),
]

MESSAGES = [{"role": "user", "content": "你好，请介绍一下客服流程"}]
MAX_TOKENS = 12


def _answer(client: openai.OpenAI, model: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    return str(raw.parse().choices[0].message.content), raw.headers["x-stratum-model-version"]


def _streamed(client: openai.OpenAI, model: str) -> str:
    stream = client.chat.completions.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
    )
    return "".join((c.choices[0].delta.content or "") if c.choices else "" for c in stream)


def _metric(server: Server, name: str, labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=10).text
    pattern = rf"^{name}\{{{labels}\}} (\S+)$" if labels else rf"^{name} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_adapter_hot_load_replace_and_remove(server: Server, tiny_model_dir: Path, tmp_path: Path) -> None:
    first = build_tiny_lora(tiny_model_dir, tmp_path / "support-v1", seed=11)
    second = build_tiny_lora(tiny_model_dir, tmp_path / "support-v2", seed=12, modules=("o_proj", "up_proj"))
    expected_first = reference_greedy(tiny_model_dir, first, MESSAGES, max_tokens=MAX_TOKENS)
    expected_second = reference_greedy(tiny_model_dir, second, MESSAGES, max_tokens=MAX_TOKENS)
    base_text = reference_greedy(tiny_model_dir, None, MESSAGES, max_tokens=MAX_TOKENS)
    assert len({expected_first, expected_second, base_text}) == 3  # the adapters do change the output

    added = server.cli(
        "models", "add", "support-bot", "--adapter", str(first), "--base", "tiny@1",
        "--description", "客服机器人", "--json",
    )  # fmt: skip
    version = json.loads(added.stdout)
    assert (version["variant"], version["metadata"]["base"]) == ("adapter", "tiny@1")

    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0) as client:
        text, served = _answer(client, "support-bot")
        assert (text, served) == (expected_first, "support-bot@1")
        assert _streamed(client, "support-bot") == expected_first
        assert _answer(client, "tiny")[0] == base_text  # the base is served alongside, unchanged
        # One engine serves both: the base was not loaded a second time.
        ready = httpx.get(f"http://127.0.0.1:{server.port}/readyz", timeout=10).json()
        assert ready["models_loaded"].count("tiny@1") == 1 and "support-bot@1" not in ready["models_loaded"]
        assert _metric(server, "stratum_model_cache_loads_total", 'kind="adapter",model="support-bot"') == 1
        assert _metric(server, "stratum_model_cache_hits_total", 'kind="adapter",model="support-bot"') >= 1

        # A new version: "support-bot" (latest) moves to it without a restart; v1 stays addressable.
        server.cli("models", "add", "support-bot", "--adapter", str(second), "--base", "tiny@1")
        deadline = time.monotonic() + 10
        while _answer(client, "support-bot")[1] != "support-bot@2" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _answer(client, "support-bot") == (expected_second, "support-bot@2")
        assert _answer(client, "support-bot@1")[0] == expected_first

        # Removing the model unloads its adapters; requests by its name are 404 again.
        held = _metric(server, "stratum_model_cache_bytes", "")
        server.cli("models", "remove", "support-bot", "--yes")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _answer(client, "support-bot")
            except openai.NotFoundError:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("support-bot still served after removal")
        deadline = time.monotonic() + 10  # the pool prunes removed versions every 2 s
        while _metric(server, "stratum_model_cache_bytes", "") >= held and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _metric(server, "stratum_model_cache_bytes", "") < held
        assert _answer(client, "tiny")[0] == base_text


def test_adapter_errors_are_clean(server: Server, tmp_path: Path) -> None:
    result = server.cli(
        "models", "add", "bad-bot", "--adapter", str(tmp_path), "--base", "tiny@1", check=False
    )
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and "adapter_config.json" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
