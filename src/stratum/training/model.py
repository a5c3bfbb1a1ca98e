"""What every training job shares: finding the base model and the data, LoRA or full set-up,
padding, and writing and registering the result."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch

from stratum.data.service import DatasetService
from stratum.errors import InvalidRequest, PermissionDenied
from stratum.jobs import JobContext
from stratum.registry.lineage import LineageService
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database
from stratum.training.config import TrainConfig
from stratum.training.data import read_jsonl

TRAIN_HINT = "pip install 'stratum[train]'"
QLORA_HINT = "pip install 'stratum[qlora]'"
ADAPTER_METHODS = ("lora", "qlora")


def require_bitsandbytes() -> Any:
    try:
        return importlib.import_module("bitsandbytes")
    except ImportError as exc:
        raise InvalidRequest(
            f"method qlora needs bitsandbytes (4-bit base weights); install it with: {QLORA_HINT}",
            param="method",
        ) from exc


def require_peft() -> Any:
    try:
        return importlib.import_module("peft")
    except ImportError as exc:
        raise ImportError(f"LoRA training needs peft; install it with: {TRAIN_HINT}") from exc


def resolve_base(registry: RegistryService, config: TrainConfig) -> tuple[Path, str | None]:
    """The base model's directory and, when it came from the registry, its exact ref (NAME@V)."""
    if config.base_path is not None:
        directory = Path(config.base_path).expanduser()
        if not (directory / "config.json").is_file():
            raise InvalidRequest(f"base_path {directory} has no config.json", param="base_path")
        return directory, None
    assert config.base is not None
    version = registry.resolve(config.base)
    if version.variant == "adapter":
        raise InvalidRequest(
            f"{version.ref} is an adapter: train on its base ({version.metadata.get('base')}) instead",
            param="base",
        )
    if version.source not in ("local", "demo") or not version.artifact_uri:
        raise InvalidRequest(
            f"{version.ref} is a {version.source} model: only local model directories can be fine-tuned",
            param="base",
        )
    return Path(version.artifact_uri), version.ref


def load_rows(
    db: Database, config: TrainConfig, *, project: str | None
) -> tuple[list[dict[str, Any]], str, str | None]:
    """(rows, source for error messages, dataset version ref or None for a file).

    A dataset ref is resolved in the job's project; a job may use its project's datasets and
    platform datasets, never another project's."""
    if config.dataset_path is not None:
        rows = read_jsonl(config.dataset_path)
        if config.split is not None:
            rows = [row for row in rows if row.get("split") == config.split]
        return rows, Path(config.dataset_path).name, None
    assert config.dataset is not None
    datasets = DatasetService(db, Settings())
    version = datasets.get(config.dataset, project=project)
    if version.project is not None and version.project != project:
        raise PermissionDenied(
            f"dataset {config.dataset} belongs to another project than the job's", param="dataset"
        )
    rows = datasets.load_rows(version, split=config.split)
    if not rows:
        raise InvalidRequest(f"dataset {version.ref} has no rows in split {config.split!r}", param="split")
    return rows, version.ref, version.ref


def load_model(
    directory: Path, config: TrainConfig
) -> tuple[torch.nn.Module, list[tuple[str, torch.nn.Parameter]]]:
    """The base in fp32 with LoRA adapters (or all weights trainable for ``method: full``); for
    ``method: qlora`` the base's linear layers are stored in 4 bits (nf4, bitsandbytes, which runs
    on CPU) and computed in fp32, the LoRA weights stay fp32.

    Seeded first: the LoRA A matrices are initialised from torch's RNG."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(config.seed)
    if config.method == "qlora":
        model = _load_4bit(directory)
    else:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    if config.method in ADAPTER_METHODS:
        peft = require_peft()
        lora = peft.LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            task_type="CAUSAL_LM",
        )
        try:
            model = peft.get_peft_model(model, lora)
        except ValueError as exc:
            raise InvalidRequest(f"cannot add LoRA adapters: {exc}", param="lora.target_modules") from None
    model.train()
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return model, named


def _load_4bit(directory: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    require_bitsandbytes()
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        bnb_4bit_use_double_quant=False,
    )
    try:
        return AutoModelForCausalLM.from_pretrained(
            directory, dtype=torch.float32, quantization_config=quantization, device_map="cpu"
        )
    except (ImportError, RuntimeError, ValueError) as exc:
        message = f"cannot load {directory.name} in 4 bits for qlora: {exc}"
        raise InvalidRequest(message, param="method") from None


def parameter_count(model: torch.nn.Module) -> int:
    """Weights in the model; a 4-bit weight packs two values per stored byte."""
    total = 0
    for p in model.parameters():
        total += p.numel() * 2 if type(p).__name__ == "Params4bit" else p.numel()
    return total


def pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest row: (ids, attention mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def token_logprobs(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(token t | tokens < t) for t >= 1, shape (batch, width - 1)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def save_outputs(
    context: JobContext,
    model: torch.nn.Module,
    tokenizer: Any,
    config: TrainConfig,
    *,
    merge: bool,
    base_dir: Path,
) -> dict[str, str]:
    """Write the adapter (LoRA) or the whole model; ``merge`` also writes the LoRA merged into the
    base (for a base given by path, which the registry cannot link an adapter to).

    A QLoRA adapter is merged into the fp32 base read again from ``base_dir``, not into the 4-bit
    copy it was trained on: the result is a plain fp32 model any engine serves, and it is what
    serving the adapter on the fp32 base computes."""
    out = context.workdir / "output"
    paths: dict[str, str] = {}
    if config.method in ADAPTER_METHODS:
        adapter = out / "adapter"
        model.save_pretrained(adapter, safe_serialization=True)
        tokenizer.save_pretrained(adapter)
        paths["adapter_path"] = str(adapter)
        if not merge:
            return paths
        if config.method == "qlora":
            from transformers import AutoModelForCausalLM

            peft = require_peft()
            fp32 = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
            model = peft.PeftModel.from_pretrained(fp32, adapter)
        model = model.merge_and_unload()  # type: ignore[operator]
    merged = out / ("merged" if config.method in ADAPTER_METHODS else "model")
    model.save_pretrained(merged, safe_serialization=True)
    tokenizer.save_pretrained(merged)
    paths["model_path"] = str(merged)
    return paths


def register(
    context: JobContext,
    registry: RegistryService,
    lineage: LineageService,
    *,
    config: TrainConfig,
    base_dir: Path,
    base_ref: str | None,
    dataset_ref: str | None,
    paths: dict[str, str],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """Register the result once (a retried job that already registered returns the same ref), with
    lineage: dataset version → job (trained_on), base model → job (fine_tuned), job → result
    (produced, carrying the job's metrics)."""
    marker = context.workdir / "registered.json"
    if marker.is_file():
        return dict(json.loads(marker.read_text(encoding="utf-8")))
    name = config.output or f"{(base_ref or base_dir.name).split('@')[0]}-{context.kind}"
    metadata = {
        "job_id": context.job_id,
        "job_kind": context.kind,
        "dataset": dataset_ref or config.dataset_path,
        "training": {k: v for k, v in config.model_dump().items() if k not in ("base_path", "dataset_path")},
        "metrics": metrics,
    }
    description = f"{context.kind} of {base_ref or base_dir.name} (job {context.job_id})"
    actor = f"job:{context.job_id}"
    if config.method in ADAPTER_METHODS and base_ref is not None:
        # An adapter version linked to the exact base version it was trained on.
        version = registry.add_model(
            name=name,
            source="local",
            path=paths["adapter_path"],
            variant="adapter",
            base=base_ref,
            metadata=metadata,
            description=description,
            actor=actor,
        )
    else:
        # Full weights (a full fine-tune, or a LoRA merged into a base given by path).
        metadata |= {"base": base_ref or str(base_dir), "merged_adapter": paths.get("adapter_path")}
        version = registry.add_model(
            name=name,
            source="local",
            path=paths["model_path"],
            metadata=metadata,
            description=description,
            actor=actor,
        )
    job: tuple[str, str] = ("job", context.job_id)
    if dataset_ref is not None:
        lineage.add_edge(source=("dataset", dataset_ref), target=job, relation="trained_on", actor=actor)
    if base_ref is not None:
        lineage.add_edge(source=("model", base_ref), target=job, relation="fine_tuned", actor=actor)
    lineage.add_edge(
        source=job, target=("model", version.ref), relation="produced", actor=actor, metadata=metrics
    )
    registered = {"model": version.ref, **paths}
    marker.write_text(json.dumps(registered), encoding="utf-8")
    return registered


def job_metrics(loop: Any, *, trainable: int, total: int) -> dict[str, Any]:
    return {
        "train_loss": loop.train_loss,
        "final_loss": loop.losses[-1] if loop.losses else None,
        "steps": loop.steps,
        "resumed_from_step": loop.resumed_from,
        "tokens": loop.tokens,
        "tokens_per_s": round(loop.tokens / loop.seconds, 1) if loop.seconds > 0 else None,
        "seconds": round(loop.seconds, 3),
        "trainable_params": trainable,
        "total_params": total,
    }
