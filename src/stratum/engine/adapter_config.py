"""Reading a PEFT LoRA adapter's ``adapter_config.json`` without torch (the registry and CLI use it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stratum.errors import InvalidRequest

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# adapter_config.json flags that would make the adapter compute something other than plain LoRA.
_UNSUPPORTED = {
    "use_dora": "DoRA",
    "lora_bias": "LoRA bias",
    "modules_to_save": "modules_to_save",
    "trainable_token_indices": "trainable token indices",
    "layer_replication": "layer replication",
    "alora_invocation_tokens": "aLoRA",
}


def read_adapter_config(path: Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``; ``InvalidRequest`` if it is not a PEFT LoRA directory."""
    config_path = path / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequest(
            f"'{path}' has no {CONFIG_FILE}: expected a PEFT LoRA adapter directory "
            "(adapter_config.json + adapter_model.safetensors).",
            param="path",
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"cannot read {config_path}: {exc}", param="path") from exc
    if not isinstance(config, dict) or str(config.get("peft_type", "")).upper() != "LORA":
        found = config.get("peft_type") if isinstance(config, dict) else None
        raise InvalidRequest(f"'{path}' is not a LoRA adapter (peft_type {found!r}).", param="path")
    for flag, what in _UNSUPPORTED.items():
        if config.get(flag):
            raise InvalidRequest(
                f"adapter '{path}' uses {what}, which the engine does not serve.", param="path"
            )
    if config.get("fan_in_fan_out"):
        raise InvalidRequest(f"adapter '{path}' targets Conv1D layers (fan_in_fan_out).", param="path")
    if not any((path / name).is_file() for name in WEIGHTS_FILES):
        raise InvalidRequest(f"'{path}' has no adapter_model.safetensors.", param="path")
    return config
