"""Multi-process data parallel training on CPU: ``nproc: N`` in a job's config.

The job's child process launches ``torchrun --standalone --nproc-per-node N`` (as
``python -m torch.distributed.run``) on this module; every rank rebuilds the job's context from a
spec file and runs the same handler (``sft`` or ``dpo``) inside a gloo process group. The loop
(``training.loop``) then gives each rank a slice of every micro-batch and sums the gradients over
the ranks before each optimizer step, weighting each slice by its share of the micro-batch (label
tokens for SFT, pairs for DPO), so N processes compute the same update as one process with the
same global batch (up to float summation order). The weights stay identical on every rank.

Only rank 0 reports progress, writes checkpoints and registers the result; it passes its result
and metrics back to the launching process through ``result.json`` in the run's directory. Resume
works as for one process: every rank loads the last checkpoint rank 0 wrote.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from stratum.errors import StratumError
from stratum.jobs import JobContext, Resources

_SPEC = "spec.json"
_RESULT = "result.json"
_PR_SET_PDEATHSIG = 1


class DistributedTrainingFailed(StratumError):
    """A rank of a data-parallel training run failed."""

    code = "distributed_training_failed"


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def should_launch(nproc: int) -> bool:
    """Whether this process must start ``nproc`` ranks (it is not itself one of them)."""
    return nproc > 1 and not active() and "STRATUM_TRAIN_RANK_SPEC" not in os.environ


def threads(cpu_threads: int) -> int:
    """Torch threads for this process: a rank gets its share of the job's CPU threads."""
    return max(1, cpu_threads // world_size())


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if active():
        dist.barrier()


def gather(value: Any) -> list[Any]:
    """``value`` from every rank, in rank order (just ``[value]`` in a single process)."""
    if not active():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def _die_with_parent() -> None:
    """Get SIGTERM when the parent dies (even by SIGKILL): torchrun when the job's process dies, a
    rank when torchrun dies, so no rank trains on as an orphan."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the ranks end when their next collective fails
        pass


def launch(context: JobContext, entry: str, nproc: int) -> dict[str, Any]:
    """Run ``entry`` (``module:function``) on ``nproc`` ranks; rank 0's result, its metrics merged
    into ``context.metrics``."""
    directory = context.workdir / f"ranks-attempt-{context.attempt}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    spec = {
        "entry": entry,
        "context": {
            "job_id": context.job_id,
            "kind": context.kind,
            "attempt": context.attempt,
            "config": context.config,
            "resources": context.resources.model_dump(),
            "workdir": str(context.workdir),
            "rundir": str(context.rundir),
            "project": context.project,
        },
    }
    (directory / _SPEC).write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "stratum.training.distributed",
        str(directory / _SPEC),
    ]
    threads = max(1, context.resources.cpu_threads // nproc)
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "STRATUM_TRAIN_RANK_SPEC": str(directory / _SPEC)}
    context.log(f"data parallel: {nproc} processes (gloo), {threads} thread(s) each")
    launcher = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)
    try:
        code = launcher.wait()
    except BaseException:  # cancelled (SIGTERM → SystemExit): let torchrun stop its ranks
        launcher.terminate()
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            launcher.kill()
        raise
    result_path = directory / _RESULT
    if code != 0 or not result_path.is_file():
        errors = sorted(directory.glob("error-rank-*.txt"))
        detail = "see the job log"
        if errors:
            detail = errors[0].read_text(encoding="utf-8").strip().splitlines()[-1]
        raise DistributedTrainingFailed(
            f"data-parallel training failed (torchrun exit code {code}): {detail}"
        )
    outcome = json.loads(result_path.read_text(encoding="utf-8"))
    context.metrics.update(outcome["metrics"])
    return dict(outcome["result"])


def _rank_context(spec: dict[str, Any], rank_: int) -> JobContext:
    fields = dict(spec["context"])
    fields["resources"] = Resources(**fields["resources"])
    fields["workdir"] = Path(fields["workdir"])
    rundir = Path(fields["rundir"])
    if rank_ != 0:  # only rank 0 reports progress to the worker
        rundir = Path(fields["workdir"]) / f"ranks-attempt-{fields['attempt']}" / f"rank-{rank_}"
        rundir.mkdir(parents=True, exist_ok=True)
    fields["rundir"] = rundir
    known = {f.name for f in dataclasses.fields(JobContext)}
    return JobContext(**{k: v for k, v in fields.items() if k in known})


def main(argv: list[str]) -> int:
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    _die_with_parent()  # a rank also stops if torchrun itself is killed
    dist.init_process_group("gloo")
    me = dist.get_rank()
    try:
        context = _rank_context(spec, me)
        module, function = spec["entry"].split(":")
        result = getattr(importlib.import_module(module), function)(context)
        barrier()
        if me == 0:
            outcome = {"result": result, "metrics": context.metrics}
            tmp = spec_path.with_name(f".{_RESULT}.tmp")
            tmp.write_text(json.dumps(outcome, ensure_ascii=False, default=str), encoding="utf-8")
            os.replace(tmp, spec_path.with_name(_RESULT))
        return 0
    except BaseException as exc:
        message = str(exc) if isinstance(exc, StratumError) else f"{type(exc).__name__}: {exc}"
        spec_path.with_name(f"error-rank-{me}.txt").write_text(
            traceback.format_exc() + f"\n{message}\n", encoding="utf-8"
        )
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
