"""The fine-tuning walk as a user meets it: a dataset imported into a project, an SFT job
submitted through the admin API of a running ``stratum serve`` (whose in-process worker runs it),
followed with the CLI, the adapter registered with lineage, then chatted with through the SDK."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import STRATUM, start_server, stop_server
from tests.training.conftest import CHAT_ROWS, write_jsonl

pytestmark = pytest.mark.slow


def test_sft_job_through_the_api_ends_as_a_served_adapter(tmp_path: Path, tiny_model_dir: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "STRATUM_HOME": str(home), "HF_HUB_OFFLINE": "1"}

    def cli(*args: str) -> str:
        done = subprocess.run([STRATUM, *args], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("models", "add", "tiny", "--path", str(tiny_model_dir))
    cli("orgs", "create", "acme")
    cli("projects", "create", "acme/bot")
    key = json.loads(cli("keys", "create", "acme/bot", "--role", "developer", "--json"))["key"]
    data = write_jsonl(tmp_path / "faq.jsonl", CHAT_ROWS[:5])
    cli("data", "import", str(data), "--name", "faq", "--project", "acme/bot")

    server = start_server(home)
    try:
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}", headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        config = {"base": "tiny@1", "dataset": "faq@1", "output": "faq-lora", "max_steps": 4}
        created = api.post("/admin/v1/orgs/acme/projects/bot/jobs", json={"kind": "sft", "config": config})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 300
        while (job := api.get(f"/admin/v1/orgs/acme/projects/bot/jobs/{job_id}").json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.25)
        assert job["status"] == "succeeded", (job["error"], server.cli("jobs", "logs", job_id).stdout[-3000:])
        assert job["progress"]["step"] == 4 and job["metrics"]["tokens_per_s"] > 0
        assert job["result"]["model"] == "faq-lora@1"

        logs = server.cli("jobs", "logs", job_id).stdout
        assert "5 examples from acme/bot/faq@1" in logs and "checkpoint saved" in logs
        shown = json.loads(server.cli("models", "show", "faq-lora", "--json").stdout)
        assert shown["versions"][0]["variant"] == "adapter"
        lineage = json.loads(server.cli("lineage", "faq-lora@1", "--json").stdout)
        upstream = {(e["source_kind"], e["source_id"], e["relation"]) for e in lineage["upstream"]}
        assert {("job", job_id, "produced"), ("dataset", "acme/bot/faq@1", "trained_on")} <= upstream

        client = OpenAI(base_url=server.base_url, api_key=key)
        reply = client.chat.completions.create(
            model="faq-lora", messages=[{"role": "user", "content": "Stratum 是什么？"}], max_tokens=8
        )
        assert reply.choices[0].message.content is not None
        assert reply.model.startswith("faq-lora")
        api.close()
    finally:
        stop_server(server)
