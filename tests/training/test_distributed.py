"""Data parallel SFT with ``nproc: 2`` (torchrun, gloo on CPU) against one process with the same
global batch, and resuming a 2-process run from the checkpoint rank 0 wrote."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stratum.errors import InvalidRequest
from stratum.registry.service import RegistryService
from stratum.storage import Database
from stratum.training import sft
from stratum.training.config import validate_sft
from tests.conftest import fresh_database
from tests.training.test_methods import _context


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """SQLite only: these runs test training, not the store (the jobs and registry suites run on
    both backends), and each costs tens of seconds of CPU per backend."""
    with fresh_database("sqlite", tmp_path) as database:
        database.migrate()
        yield database


pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

# Float summation order differs (each rank reduces its slice, then gloo sums the two), and AdamW
# divides by sqrt(v), so near-zero gradients can amplify that noise a little: the weights agree to
# ATOL (3.3e-7 was measured here, for weights that moved by up to 0.025), and the per-step losses to
# LOSS_RTOL.
ATOL = 1e-5
LOSS_RTOL = 1e-4


@pytest.fixture
def store(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("STRATUM_DATABASE_URL", db.url.render_as_string(hide_password=False))
    return db


def _losses(workdir: Path) -> list[float]:
    last = sorted((workdir / "checkpoints").glob("step-*"))[-1]
    return list(json.loads((last / "state.json").read_text(encoding="utf-8"))["losses"])


def _adapter(result: dict[str, str]) -> dict[str, torch.Tensor]:
    return load_file(str(Path(result["adapter_path"]) / "adapter_model.safetensors"))


def test_two_processes_match_one_and_resume(
    store: Database, tmp_path: Path, tiny_registered: str, chat_data: Path
) -> None:
    # 8 rows, micro-batch 4 (2 per rank) × 2 accumulation steps: rows of different lengths, so the
    # ranks' slices hold different numbers of label tokens and must be weighted to match.
    config = {"base": tiny_registered, "dataset_path": str(chat_data), "max_steps": 4, "batch_size": 4}
    config |= {"grad_accum": 2, "learning_rate": 1e-2, "checkpoint_every": 2, "keep_checkpoints": 2}
    one = _context(tmp_path / "one", "sft", config | {"output": "one"})
    single = sft.run(one)
    two = _context(tmp_path / "two", "sft", config | {"output": "two", "nproc": 2})
    parallel = sft.run(two)

    assert two.metrics["steps"] == 4 and two.metrics["tokens"] == one.metrics["tokens"]
    assert _losses(two.workdir) == pytest.approx(_losses(one.workdir), rel=LOSS_RTOL)
    a, b = _adapter(single), _adapter(parallel)
    assert set(a) == set(b)
    moved = max(float(t.abs().max()) for name, t in a.items() if "lora_B" in name)
    assert moved > 10 * ATOL  # training moved the weights far more than the tolerance
    worst = max(float((a[name] - b[name]).abs().max()) for name in a)
    assert worst < ATOL, worst

    # Rank 0 alone registered, once; it reported progress to the job's run directory.
    registry = RegistryService(store)
    assert [v.ref for v in registry.get_model("two").versions] == [parallel["model"]]
    assert json.loads((two.rundir / "progress.json").read_text(encoding="utf-8"))["step"] == 4

    # Resume: drop the last checkpoint and the outputs, run the job's next attempt.
    checkpoints = sorted((two.workdir / "checkpoints").glob("step-*"))
    assert [p.name for p in checkpoints] == ["step-00000002", "step-00000004"]
    shutil.rmtree(checkpoints[-1])
    shutil.rmtree(two.workdir / "output")
    (two.workdir / "registered.json").unlink()
    again = _context(tmp_path / "two", "sft", config | {"output": "two", "nproc": 2})
    again.attempt = 2
    resumed = sft.run(again)
    assert again.metrics["resumed_from_step"] == 2
    after = _adapter(resumed)
    assert all(torch.equal(after[name], b[name]) for name in b)  # bit-identical to the uninterrupted run


def test_a_failing_rank_is_reported(store: Database, tmp_path: Path, tiny_dir: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    missing.write_text('{"text": 1}\n', encoding="utf-8")
    config = {"base_path": str(tiny_dir), "dataset_path": str(missing), "max_steps": 1, "nproc": 2}
    context = _context(tmp_path, "sft", config)
    with pytest.raises(Exception, match=r"data-parallel training failed.*nowhere\.jsonl row 1"):
        sft.run(context)


def test_nproc_is_checked_at_submit() -> None:
    with pytest.raises(InvalidRequest, match="batch_size 2 must be at least nproc 4"):
        validate_sft({"base": "m", "dataset_path": "x", "nproc": 4, "batch_size": 2})
    with pytest.raises(InvalidRequest, match="nproc"):
        validate_sft({"base": "m", "dataset_path": "x", "nproc": 0})


def _rank_processes(marker: str) -> list[int]:
    """Live processes whose command line mentions ``marker`` (a job's rank spec directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def test_worker_kill_9_stops_the_ranks_and_the_retry_resumes(
    db: Database, tmp_path: Path, tiny_registered: str, chat_data: Path
) -> None:
    import os
    import signal
    import time

    from stratum.jobs import JobService, JobSubmit, Resources
    from stratum.jobs.worker import Worker
    from stratum.settings import Settings

    settings = Settings(home=tmp_path / "home", database_url=db.url.render_as_string(hide_password=False))
    jobs = JobService(db, jobs_dir=settings.jobs_dir)
    capacity = Resources(cpu_threads=2, memory_mb=4096)
    worker = Worker(db, settings, capacity=capacity, worker_id="w", poll_s=0.05)
    # The kill lands at step 10+ (a few steps late at most, after the step-5 checkpoint); 40 steps
    # leave room for it and keep the resumed attempt short (each 100 steps more cost ~8 s on two
    # cores, twice that under load).
    steps = 40
    config = {"base": tiny_registered, "dataset_path": str(chat_data), "max_steps": steps, "nproc": 2}
    config |= {"checkpoint_every": 5, "output": "dp-resumed"}
    resources = Resources(cpu_threads=2)
    job = jobs.submit(JobSubmit(kind="sft", config=config, max_attempts=2, resources=resources))
    marker = str(settings.jobs_dir / job.id / "ranks-attempt-1")
    killed_at = None
    deadline = time.monotonic() + 600
    while jobs.get(job.id).status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, jobs.logs(job.id).text[-3000:]
        worker.tick()
        step = jobs.get(job.id).progress.get("step", 0)
        if killed_at is None and step >= 10:
            os.kill(worker.running[job.id].execution.pid, signal.SIGKILL)  # type: ignore[attr-defined]
            killed_at = step
            # The launcher's death reaches torchrun, which stops both ranks.
            stop = time.monotonic() + 30
            while _rank_processes(marker) and time.monotonic() < stop:
                time.sleep(0.2)
            assert _rank_processes(marker) == []
        time.sleep(0.05)
    done = jobs.get(job.id)
    assert done.status == "succeeded" and done.attempts == 2, (done.error, jobs.logs(job.id).text[-3000:])
    assert killed_at is not None and killed_at < steps and 5 <= done.metrics["resumed_from_step"] < steps
    assert done.metrics["steps"] == steps
    assert [v.ref for v in RegistryService(db).get_model("dp-resumed").versions] == [done.result["model"]]


def test_dpo_on_two_processes_matches_one(
    store: Database, tmp_path: Path, tiny_registered: str, preference_data: Path
) -> None:
    from stratum.training import dpo

    # 5 pairs, micro-batch 4: the ranks hold 2 pairs each, weighted by pairs.
    config = {"base": tiny_registered, "dataset_path": str(preference_data), "max_steps": 3, "batch_size": 4}
    config |= {"learning_rate": 5e-3, "beta": 0.5, "register": False}
    one = _context(tmp_path / "one", "dpo", config)
    single = dpo.run(one)
    two = _context(tmp_path / "two", "dpo", config | {"nproc": 2})
    parallel = dpo.run(two)
    assert _losses(two.workdir) == pytest.approx(_losses(one.workdir), rel=LOSS_RTOL)
    a, b = _adapter(single), _adapter(parallel)
    assert max(float((a[name] - b[name]).abs().max()) for name in a) < ATOL
