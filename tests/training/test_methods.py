"""Full fine-tuning and DPO on the tiny Llama, run in-process through their job handlers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stratum.data.service import DatasetService
from stratum.errors import PermissionDenied
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tenancy import TenancyService
from stratum.jobs import JobContext, Resources
from stratum.registry.lineage import LineageService
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database
from stratum.training import dpo, sft
from stratum.training.config import validate_dpo, validate_sft
from tests.training.conftest import CHAT_ROWS, write_jsonl

pytestmark = pytest.mark.slow


def _context(tmp_path: Path, kind: str, config: dict[str, object]) -> JobContext:
    workdir = tmp_path / "job"
    (workdir / "run").mkdir(parents=True, exist_ok=True)
    normalised = (validate_sft if kind == "sft" else validate_dpo)(config)
    return JobContext(
        job_id=f"{kind}-job",
        kind=kind,
        attempt=1,
        config=normalised,
        resources=Resources(cpu_threads=1),
        workdir=workdir,
        rundir=workdir / "run",
    )


@pytest.fixture
def store(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    # The handlers open the store from settings, as they do in a job's child process.
    monkeypatch.setenv("STRATUM_DATABASE_URL", db.url.render_as_string(hide_password=False))
    return db


def test_full_fine_tune_changes_every_weight_and_registers(
    store: Database, tmp_path: Path, tiny_registered: str, tiny_dir: Path, chat_data: Path
) -> None:
    config = {"base": tiny_registered, "dataset_path": str(chat_data), "method": "full", "max_steps": 3}
    config |= {"learning_rate": 1e-3, "output": "tiny-full"}
    context = _context(tmp_path, "sft", config)
    result = sft.run(context)
    after = load_file(str(Path(result["model_path"]) / "model.safetensors"))
    before = load_file(str(tiny_dir / "model.safetensors"))
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) == len(before)
    assert context.metrics["trainable_params"] == context.metrics["total_params"]
    version = RegistryService(store).resolve(result["model"])
    assert version.variant == "full" and version.metadata["base"] == tiny_registered


def test_lora_on_a_base_path_registers_the_merged_model(
    store: Database, tmp_path: Path, tiny_dir: Path, chat_data: Path
) -> None:
    config = {"base_path": str(tiny_dir), "dataset_path": str(chat_data), "max_steps": 2, "output": "merged"}
    context = _context(tmp_path, "sft", config)
    result = sft.run(context)
    version = RegistryService(store).resolve(result["model"])
    assert version.variant == "full" and version.artifact_uri == result["model_path"]
    assert version.metadata["merged_adapter"] == result["adapter_path"]
    assert version.metadata["base"] == str(tiny_dir) and version.metadata["architecture"]


def test_dpo_prefers_the_chosen_answers(
    store: Database, tmp_path: Path, tiny_registered: str, preference_data: Path
) -> None:
    config = {"base": tiny_registered, "dataset_path": str(preference_data), "max_steps": 12}
    config |= {"learning_rate": 5e-3, "batch_size": 5, "beta": 0.5, "checkpoint_every": 4}
    context = _context(tmp_path, "dpo", config)
    result = dpo.run(context)
    losses = context.metrics
    # log σ(0) = log 2: the first step starts exactly at the reference (LoRA B is zero).
    progress = context.rundir / "progress.json"
    assert progress.is_file()
    assert losses["final_loss"] < 0.6931 and losses["reward_accuracy"] > 0.5
    assert (Path(result["adapter_path"]) / "adapter_model.safetensors").is_file()
    version = RegistryService(store).resolve(result["model"])
    assert version.metadata["job_kind"] == "dpo" and version.metadata["dataset"] == str(preference_data)
    assert version.variant == "adapter" and version.metadata["base"] == tiny_registered
    produced = LineageService(store).upstream(("model", version.ref), depth=1)
    assert {(e.source_id, e.relation) for e in produced} >= {
        ("dpo-job", "produced"),
        (tiny_registered, "base_of"),
    }
    assert next(e for e in produced if e.relation == "produced").metadata["reward_accuracy"] > 0.5


def test_configs_are_checked_at_submit() -> None:
    from stratum.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="exactly one of base"):
        validate_sft({"dataset_path": "x.jsonl"})
    with pytest.raises(InvalidRequest, match=r"lora\.r"):
        validate_sft({"base": "m", "dataset_path": "x", "lora": {"r": 0}})
    with pytest.raises(InvalidRequest, match="method"):
        validate_dpo({"base": "m", "dataset_path": "x", "method": "full"})
    assert validate_sft({"base": "m", "dataset": "d@1", "register": False})["register_output"] is False


def test_sft_on_a_dataset_version_of_the_job_project(
    store: Database, tmp_path: Path, tiny_registered: str
) -> None:
    tenancy = TenancyService(store)
    tenancy.create_org(OrgCreate(name="acme"))
    for project in ("bot", "other"):
        tenancy.create_project("acme", ProjectCreate(name=project))
    datasets = DatasetService(store, Settings())
    chat_only = write_jsonl(tmp_path / "faq.jsonl", CHAT_ROWS[:5])
    version = datasets.import_file(chat_only, name="faq", project="acme/bot")
    datasets.import_file(chat_only, name="secret", project="acme/other")
    config = {"base": tiny_registered, "dataset": "faq", "max_steps": 2, "output": "faq-lora"}
    context = _context(tmp_path, "sft", config)
    context.project = "acme/bot"
    result = sft.run(context)
    assert context.metrics["steps"] == 2
    edges = LineageService(store).downstream(("dataset", version.ref), depth=2)
    assert {(e.relation, e.target_id) for e in edges} >= {
        ("trained_on", context.job_id),
        ("produced", result["model"]),
    }
    assert RegistryService(store).resolve(result["model"]).metadata["dataset"] == version.ref
    stolen = _context(tmp_path / "2", "sft", config | {"dataset": "acme/other/secret"})
    stolen.project = "acme/bot"
    with pytest.raises(PermissionDenied, match="another project"):
        sft.run(stolen)
