"""Scheduled re-evaluation as an operator meets it: `stratum eval schedule add`, then a plain
`stratum worker` process (no cron) notices the due schedule, queues an `eval` job and runs it; the
schedule shows the stored run. The model is an upstream (a small OpenAI-compatible fake)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stratum.jobs import JobService
from stratum.storage import Database
from tests.cli.conftest import FakeOpenAI, fake_openai  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

STRATUM = str(Path(sys.executable).parent / "stratum")


def test_a_worker_process_runs_a_due_schedule(fake_openai: FakeOpenAI, tmp_path: Path) -> None:  # noqa: F811
    env = {
        **os.environ,
        "STRATUM_HOME": str(tmp_path / "home"),
        "STRATUM_EVAL_SCHEDULE_POLL": "0.5",
        "FAKE_KEY": fake_openai.api_key,
        "PYTHONIOENCODING": "utf-8",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("STRATUM_DATABASE_URL", None)

    def stratum(*args: str) -> str:
        done = subprocess.run(
            [STRATUM, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"stratum {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    stratum(
        "models",
        "add",
        "bot",
        "--upstream",
        fake_openai.url,
        "--upstream-model",
        "fake",
        "--api-key-env",
        "FAKE_KEY",
    )
    stratum("models", "alias", "bot", "prod", "1")
    suite = tmp_path / "问答.jsonl"
    suite.write_text(
        "\n".join(
            json.dumps(
                {"id": f"q{i}", "prompt": f"问{i}", "answer": "你好，我是测试模型。" if i < 1 else "不"},
                ensure_ascii=False,
            )
            for i in range(2)
        ),
        encoding="utf-8",
    )
    made = json.loads(
        stratum(
            "eval", "schedule", "add", "bot:prod", "--suite", str(suite), "--metric", "exact_match", "--json"
        )
    )
    log = (tmp_path / "worker.txt").open("w")
    worker = subprocess.Popen(
        [STRATUM, "worker", "--cpu-threads", "1", "--memory-mb", "1024"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # Polled in-process: a `stratum jobs list` per poll is an interpreter start-up beside the worker.
    store = Database(f"sqlite:///{tmp_path / 'home' / 'stratum.db'}")
    try:
        queue = JobService(store, jobs_dir=tmp_path / "home" / "jobs")
        deadline = time.monotonic() + 120
        while True:
            polled = queue.list_jobs()
            if polled and polled[0].status in ("succeeded", "failed"):
                break
            assert worker.poll() is None, (tmp_path / "worker.txt").read_text()
            assert time.monotonic() < deadline, "the worker never ran the schedule"
            time.sleep(0.2)
    finally:
        store.dispose()
        worker.terminate()
        worker.wait(30)
        log.close()
    [job] = json.loads(stratum("jobs", "list", "--json"))
    assert job["kind"] == "eval" and job["status"] == "succeeded", job
    assert job["result"]["schedule"]["id"] == made["id"] and job["result"]["metrics"] == {"exact_match": 0.5}
    [schedule] = json.loads(stratum("eval", "schedule", "list", "--json"))
    assert schedule["last_run_id"] == job["result"]["run"] and not schedule["flagged"]
