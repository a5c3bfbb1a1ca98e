"""Training job configs (YAML in the CLI, JSON in the API), validated at submit time.

Sane defaults for a CPU box: LoRA r=8 on the attention projections, batch 4, 100 steps, a
checkpoint every 10 steps, seed 42. Either ``base`` (a registry ref, NAME[@VERSION|:ALIAS]) or
``base_path`` (a Hugging Face directory on the server) names the model; either ``dataset`` (a
dataset version ref) or ``dataset_path`` (a JSONL file on the server) names the data.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stratum.errors import InvalidRequest


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=8, ge=1, le=1024, description="Rank of the low-rank update.")
    alpha: float = Field(default=16.0, gt=0, description="Scale: the update is multiplied by alpha/r.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names that get an adapter (Llama/Qwen/Mistral attention projections).",
    )


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    base: str | None = Field(default=None, description="Registry ref of the base model.")
    base_path: str | None = Field(default=None, description="Or a model directory on the server.")
    dataset: str | None = Field(default=None, description="Dataset version ref (stratum data).")
    dataset_path: str | None = Field(default=None, description="Or a JSONL file on the server.")
    split: str | None = Field(default=None, max_length=64, description="Only rows of this split (train).")
    output: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$",
        description="Registry name for the result; default: <base name>-<kind>.",
    )
    method: Literal["lora", "full", "qlora"] = Field(
        default="lora",
        description="lora: LoRA on the fp32 base; qlora: LoRA on a 4-bit (nf4) base (bitsandbytes); "
        "full: every weight.",
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    max_steps: int | None = Field(default=None, ge=1, le=10_000_000, description="Optimizer steps.")
    epochs: float | None = Field(default=None, gt=0, le=1000, description="Or passes over the data.")
    batch_size: int = Field(default=4, ge=1, le=4096)
    grad_accum: int = Field(default=1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(default=2e-4, gt=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    warmup_steps: int = Field(default=0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    max_length: int = Field(default=512, ge=8, le=131_072, description="Tokens per example (cut beyond).")
    seed: int = Field(default=42, ge=0, lt=2**63)
    checkpoint_every: int = Field(default=10, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(default=2, ge=1, le=1000)
    train_on_prompt: bool = Field(default=False, description="SFT: also learn the prompt tokens.")
    nproc: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Data-parallel processes (torchrun, gloo); the job's cpu_threads are split between them.",
    )
    register_output: bool = Field(
        default=True, alias="register", description="Register the result in the model registry."
    )

    @model_validator(mode="after")
    def _sources(self) -> TrainConfig:
        if (self.base is None) == (self.base_path is None):
            raise ValueError("give exactly one of base (a registry ref) or base_path (a directory)")
        if (self.dataset is None) == (self.dataset_path is None):
            raise ValueError("give exactly one of dataset (a dataset ref) or dataset_path (a JSONL file)")
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("give max_steps or epochs, not both")
        if self.batch_size < self.nproc:
            raise ValueError(f"batch_size {self.batch_size} must be at least nproc {self.nproc}")
        return self


class DPOConfig(TrainConfig):
    method: Literal["lora", "qlora"] = "lora"  # type: ignore[assignment]
    learning_rate: float = Field(default=5e-5, gt=0, le=1)
    beta: float = Field(default=0.1, gt=0, le=10, description="Strength of the pull towards the reference.")


def _validate(model: type[TrainConfig], config: dict[str, Any], kind: str) -> dict[str, Any]:
    try:
        return model(**config).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidRequest(f"invalid {kind} config: {problems}", param="config") from None


def validate_sft(config: dict[str, Any]) -> dict[str, Any]:
    return _validate(TrainConfig, config, "sft")


def validate_dpo(config: dict[str, Any]) -> dict[str, Any]:
    return _validate(DPOConfig, config, "dpo")
