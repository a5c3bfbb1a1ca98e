"""The fine-tuning walk as a user meets it: a dataset imported into a project, an SFT job
submitted through the admin API of a running ``stratum serve`` (whose in-process worker runs it),
followed with the CLI, the adapter registered with lineage, then chatted with through the SDK.

Runs on the session's shared e2e server (its tiny model is ``tiny@1``, its worker is on), in an
organisation of its own: a server of its own would cost one more start-up (~10 s under load)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import Server
from tests.training.conftest import CHAT_ROWS, write_jsonl

pytestmark = pytest.mark.slow


def test_sft_job_through_the_api_ends_as_a_served_adapter(tmp_path: Path, server: Server) -> None:
    def cli(*args: str) -> str:
        return server.cli(*args, timeout=180).stdout

    cli("orgs", "create", "ft-org")
    cli("projects", "create", "ft-org/bot")
    key = json.loads(cli("keys", "create", "ft-org/bot", "--role", "developer", "--json"))["key"]
    data = write_jsonl(tmp_path / "faq.jsonl", CHAT_ROWS[:5])
    cli("data", "import", str(data), "--name", "faq", "--project", "ft-org/bot")

    api = httpx.Client(
        base_url=f"http://127.0.0.1:{server.port}", headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    try:
        config = {"base": "tiny@1", "dataset": "faq@1", "output": "ft-faq-lora", "max_steps": 4}
        created = api.post("/admin/v1/orgs/ft-org/projects/bot/jobs", json={"kind": "sft", "config": config})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        deadline = time.monotonic() + 300
        while (job := api.get(f"/admin/v1/orgs/ft-org/projects/bot/jobs/{job_id}").json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.25)
    finally:
        api.close()
    assert job["status"] == "succeeded", (job["error"], server.cli("jobs", "logs", job_id).stdout[-3000:])
    assert job["progress"]["step"] == 4 and job["metrics"]["tokens_per_s"] > 0
    assert job["result"]["model"] == "ft-faq-lora@1"

    logs = cli("jobs", "logs", job_id)
    assert "5 examples from ft-org/bot/faq@1" in logs and "checkpoint saved" in logs
    shown = json.loads(cli("models", "show", "ft-faq-lora", "--json"))
    assert shown["versions"][0]["variant"] == "adapter"
    lineage = json.loads(cli("lineage", "ft-faq-lora@1", "--json"))
    upstream = {(e["source_kind"], e["source_id"], e["relation"]) for e in lineage["upstream"]}
    assert {("job", job_id, "produced"), ("dataset", "ft-org/bot/faq@1", "trained_on")} <= upstream

    client = OpenAI(base_url=server.base_url, api_key=key)
    reply = client.chat.completions.create(
        model="ft-faq-lora", messages=[{"role": "user", "content": "Stratum 是什么？"}], max_tokens=8
    )
    assert reply.choices[0].message.content is not None
    assert reply.model.startswith("ft-faq-lora")
