"""Resume equivalence: an SFT job whose child is killed with SIGKILL mid-run, then resumed by the
worker from its last checkpoint, ends with exactly the weights of a run never interrupted."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stratum.jobs import JobService, JobSubmit, Resources
from stratum.jobs.kinds import BUILTIN_KINDS, JobKind
from stratum.jobs.worker import Worker
from stratum.registry.lineage import LineageService
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database
from tests.conftest import fresh_database

pytestmark = pytest.mark.slow


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        # ~50 s per backend; SQLite kill/resume also runs in test_distributed.py and the e2e pipeline walk.
        pytest.param("sqlite", marks=pytest.mark.extra),
    ]
)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The full flow on PostgreSQL in `make test`; the SQLite run is `extra` (`make test-slow`)."""
    with fresh_database(request.param, tmp_path) as database:
        database.migrate()
        yield database


KINDS = dict(BUILTIN_KINDS) | {
    "sft-slow": JobKind("tests.training.handlers:slow_sft", "stratum.training.config:validate_sft")
}
TOTAL_STEPS = 12


def _config(base: str, data: Path, output: str) -> dict[str, object]:
    return {
        "base": base,
        "dataset_path": str(data),
        "output": output,
        "max_steps": TOTAL_STEPS,
        "batch_size": 2,
        "grad_accum": 2,
        "learning_rate": 1e-2,
        "warmup_steps": 2,
        "checkpoint_every": 3,
        "seed": 7,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
    }


def _run(worker: Worker, jobs: JobService, job_id: str, kill_at: int | None = None) -> None:
    killed = False
    deadline = time.monotonic() + 240
    while jobs.get(job_id).status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "training did not finish"
        worker.tick()
        step = jobs.get(job_id).progress.get("step", 0)
        checkpoints = list((worker.jobs_dir / job_id / "checkpoints").glob("step-*"))
        if kill_at is not None and not killed and checkpoints and step >= kill_at:
            assert step < TOTAL_STEPS
            os.kill(worker.running[job_id].execution.pid, signal.SIGKILL)  # type: ignore[attr-defined]
            killed = True
        time.sleep(0.05)
    assert killed or kill_at is None, (jobs.get(job_id).model_dump(), jobs.logs(job_id).text[-3000:])


def test_kill_and_resume_gives_identical_weights(
    db: Database, tmp_path: Path, tiny_registered: str, chat_data: Path
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=db.url.render_as_string(hide_password=False))
    jobs = JobService(db, jobs_dir=settings.jobs_dir, kinds=KINDS)
    capacity = Resources(cpu_threads=1, memory_mb=4096)
    worker = Worker(db, settings, kinds=KINDS, capacity=capacity, worker_id="w", poll_s=0.05)

    # The uninterrupted run needs no pauses (they only delay progress reports): the plain handler.
    straight = jobs.submit(JobSubmit(kind="sft", config=_config(tiny_registered, chat_data, "straight")))
    _run(worker, jobs, straight.id)
    interrupted = jobs.submit(
        JobSubmit(kind="sft-slow", config=_config(tiny_registered, chat_data, "resumed"), max_attempts=2)
    )
    _run(worker, jobs, interrupted.id, kill_at=4)

    a, b = jobs.get(straight.id), jobs.get(interrupted.id)
    assert a.status == b.status == "succeeded", (a.error, b.error)
    assert a.attempts == 1 and b.attempts == 2
    assert 3 <= b.metrics["resumed_from_step"] < TOTAL_STEPS and a.metrics["resumed_from_step"] == 0
    assert "killed by signal 9" in jobs.logs(b.id).text and "resumed from checkpoint" in jobs.logs(b.id).text

    weights_a = load_file(str(Path(a.result["adapter_path"]) / "adapter_model.safetensors"))
    weights_b = load_file(str(Path(b.result["adapter_path"]) / "adapter_model.safetensors"))
    assert weights_a.keys() == weights_b.keys() and len(weights_a) > 0
    for name, tensor in weights_a.items():
        assert torch.equal(tensor, weights_b[name]), name
    # Training changed the adapter (B starts at zero in LoRA): the comparison is not trivial.
    assert any(t.abs().sum() > 0 for n, t in weights_a.items() if "lora_B" in n)
    assert a.metrics["train_loss"] == b.metrics["train_loss"]

    # Both results are registered, linked to their base and job.
    registry = RegistryService(db)
    version = registry.resolve(b.result["model"])
    assert version.ref == "resumed@1" and version.metadata["base"] == tiny_registered
    assert version.metadata["job_id"] == b.id and version.variant == "adapter"
    assert version.base_version_id == registry.resolve(tiny_registered).id
    assert version.metadata["metrics"]["tokens_per_s"] > 0
    graph = LineageService(db).upstream(("model", version.ref), depth=2)
    edges = {(e.source_kind, e.source_id, e.relation, e.target_kind, e.target_id) for e in graph}
    assert ("job", b.id, "produced", "model", "resumed@1") in edges
    assert ("model", tiny_registered, "fine_tuned", "job", b.id) in edges
