"""The README's pipeline walk, end to end, the way a user runs it (issue: pipelines).

import a Chinese dataset → clean + dedup (new versions) → LoRA SFT job on a worker that is killed
with SIGKILL mid-run and replaced → the job resumes from its checkpoint → the adapter is registered
on its base with lineage → eval gate of the adapter against the base → the adapter served through
the gateway to the ``openai`` SDK.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from openai import OpenAI
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from stratum.jobs import JobService
from stratum.storage import Database
from stratum.training.loop import checkpoints as saved_checkpoints
from tests.e2e.conftest import ADMIN_KEY, start_server, stop_server
from tests.tiny import build_tiny_llama

pytestmark = pytest.mark.slow

STRATUM = str(Path(sys.executable).parent / "stratum")
QA = [
    ("Stratum 是什么？", "Stratum 是一个企业级大模型平台。"),
    ("怎样创建密钥？", "用 stratum keys create 创建密钥。"),
    ("知识库支持中文吗？", "支持，检索对中文分词。"),
    ("预算会超吗？", "不会，预算在并发下也精确。"),
    ("如何回滚？", "金丝雀发布失败会自动回滚。"),
    ("What is a LoRA adapter?", "A small set of weights trained on top of a base model."),
]


def small_llama(target: Path) -> Path:
    """Bigger than tests/tiny's model so that a few hundred steps take seconds, not milliseconds."""
    build_tiny_llama(target, seed=0)  # tokenizer files (with the demo chat template)
    tokenizer = AutoTokenizer.from_pretrained(target)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    return target


def stratum(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STRATUM, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=timeout,
        check=False,
    )


def ok_json(env: dict[str, str], *args: str) -> object:
    done = stratum(env, *args, "--json")
    assert done.returncode == 0, (args, done.stderr)
    return json.loads(done.stdout)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # A session of its own: SIGKILL to the group takes the worker and its job's child at once,
    # as a crashed machine would.
    with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [STRATUM, "worker"], env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_import_clean_train_kill_resume_register_gate_serve(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "STRATUM_HOME": str(home),
        "PYTHONIOENCODING": "utf-8",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "HF_HUB_OFFLINE": "1",
        "STRATUM_JOB_LEASE_SECONDS": "2",
        "STRATUM_WORKER_CPU_THREADS": "1",
    }
    env.pop("STRATUM_DATABASE_URL", None)
    base = small_llama(tmp_path / "base")
    ok_json(env, "models", "add", "base", "--path", str(base))

    # 1. Import (two exact duplicates and untidy whitespace) → clean → dedup.
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA
    ]
    rows += [
        rows[0],
        {
            "messages": [
                {"role": "user", "content": "  怎样创建密钥？ "},
                {"role": "assistant", "content": QA[1][1]},
            ]
        },
    ]
    source = tmp_path / "客服.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    imported = ok_json(env, "data", "import", str(source), "--name", "faq")
    assert imported["ref"] == "faq@1" and imported["row_count"] == 8  # type: ignore[index]
    _, dedup = ok_json(env, "data", "transform", "faq@1", "--steps", "clean,dedup")  # type: ignore[misc]
    assert dedup["ref"] == "faq@3" and dedup["row_count"] == 6

    # 2. A LoRA SFT job on an external worker, killed mid-run, resumed by a new worker.
    config = tmp_path / "lora.yaml"
    # Steps take ~60 ms here and the kill lands a few steps after the first checkpoint (step 10, seen
    # by a 0.1 s file poll), so 80 steps leave ~4 s of margin; the resumed attempt trains the rest
    # (each 100 steps more cost ~6 s, twice that under load).
    config.write_text(
        "base: base@1\ndataset: faq@3\noutput: faq-lora\nmax_steps: 80\ncheckpoint_every: 10\n"
        "batch_size: 2\nmax_length: 64\nseed: 7\n",
        encoding="utf-8",
    )
    job = ok_json(
        env, "jobs", "submit", "sft", "--config", str(config), "--cpu-threads", "1", "--max-attempts", "3"
    )
    job_id = job["id"]  # type: ignore[index]
    checkpoints = home / "jobs" / job_id / "checkpoints"
    worker = start_worker(env, tmp_path / "worker-1.log")
    try:
        wait_for(lambda: saved_checkpoints(checkpoints), 240, "a first complete checkpoint")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    killed_at = ok_json(env, "jobs", "show", job_id)
    assert killed_at["status"] == "running"  # type: ignore[index]  (its lease has not expired yet)
    worker = start_worker(env, tmp_path / "worker-2.log")
    # Polled in-process: a `stratum jobs show` per poll would start an interpreter (and torch) every
    # few tenths of a second, on the cores the worker trains on. The CLI shows the result below.
    store = Database(f"sqlite:///{home / 'stratum.db'}")
    try:
        jobs = JobService(store, jobs_dir=home / "jobs")
        wait_for(lambda: jobs.get(job_id).status in ("succeeded", "failed"), 480, "the resumed job to finish")
    finally:
        store.dispose()
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    done: Any = ok_json(env, "jobs", "show", job_id)
    logs = stratum(env, "jobs", "logs", job_id).stdout
    assert done["status"] == "succeeded", logs[-3000:]
    assert done["attempts"] == 2 and "resumed from checkpoint" in logs
    assert done["metrics"]["resumed_from_step"] > 0

    # 3. The adapter is registered on its exact base, with lineage back to the dataset version.
    adapter = ok_json(env, "models", "show", "faq-lora")
    version = adapter["versions"][-1]  # type: ignore[index]
    assert version["variant"] == "adapter" and version["metadata"]["base"] == "base@1"
    lineage = json.dumps(ok_json(env, "lineage", "faq-lora@1"), ensure_ascii=False)
    assert "faq@3" in lineage and job_id in lineage and "base@1" in lineage

    # 4. The release gate: adapter vs base on the same suite (a verdict either way, stored).
    suite = tmp_path / "suite.jsonl"
    suite.write_text(
        "\n".join(json.dumps({"prompt": q, "answer": a}, ensure_ascii=False) for q, a in QA) + "\n",
        encoding="utf-8",
    )
    gated = stratum(
        env, "eval", "gate", "faq-lora@1", "--baseline", "base@1", "--suite", str(suite), "--min-items", "6",
        "--max-tokens", "16", "--json",
    )  # fmt: skip
    assert gated.returncode in (0, 1), gated.stderr
    verdict = json.loads(gated.stdout)
    assert (verdict["candidate_ref"], verdict["baseline_ref"]) == ("faq-lora@1", "base@1")
    assert verdict["passed"] == (gated.returncode == 0)

    # 5. Served as an adapter through the gateway.
    server = start_server(home, extra_env={"STRATUM_WORKER": "false", "STRATUM_EMBEDDINGS_MODEL": "false"})
    try:
        client = OpenAI(base_url=server.base_url, api_key=ADMIN_KEY)
        reply = client.chat.completions.with_raw_response.create(
            model="faq-lora",
            messages=[{"role": "user", "content": "Stratum 是什么？"}],
            max_tokens=8,
            temperature=0,
        )
        assert reply.headers["x-stratum-model-version"] == "faq-lora@1"
        assert reply.parse().choices[0].finish_reason in ("stop", "length")
    finally:
        stop_server(server)
