"""Training throughput: LoRA and QLoRA vs full fine-tuning of a ~100M-parameter Llama, through the
real ``sft`` job handler (chat template, padding, AdamW, checkpoint at the end).

    python benchmarks/train_bench.py [--quick] [--size 100m|20m] [--steps 4] [--batch 4] [--threads 2]
        [--methods full,lora,qlora]

``--quick``: the same ~100M model, 2 steps of batch 2 at 128 tokens (a smoke run of every method).
QLoRA (``method: qlora``, the base's linear layers in 4-bit nf4 via bitsandbytes) is skipped with a
note when bitsandbytes is not installed (``pip install 'stratum[qlora]'``).

The model is built from a config with a fixed seed (random weights, the demo's tokenizer, see
``engine_core_bench.build_llama``); the data are the demo's bundled Chinese/English conversations.
Full fine-tuning is the baseline, measured in the same run. tokens/s counts every non-padding token
of the forward and backward passes, over the optimizer steps only (loading and saving excluded),
as the job reports it in its metrics. The box is small and shared: read the ratio, not the
absolute numbers, and note the load average printed alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from engine_core_bench import build_llama

from stratum.engine.demo_conversations import load_conversations
from stratum.jobs import JobContext, Resources
from stratum.training import sft
from stratum.training.config import validate_sft


def _rows(limit: int) -> list[dict[str, object]]:
    rows = []
    for conversation in load_conversations()[:limit]:
        messages = [dict(turn) for turn in conversation]
        if messages and messages[-1]["role"] == "assistant":
            rows.append({"messages": messages})
    return rows


def _run(base: Path, data: Path, work: Path, method: str, args: argparse.Namespace) -> dict[str, float]:
    config = validate_sft(
        {
            "base_path": str(base),
            "dataset_path": str(data),
            "method": method,
            "max_steps": args.steps,
            "batch_size": args.batch,
            "max_length": args.max_length,
            "checkpoint_every": 10_000,  # only the final checkpoint
            "register": False,
        }
    )
    (work / "run").mkdir(parents=True)
    context = JobContext(
        job_id=f"bench-{method}",
        kind="sft",
        attempt=1,
        config=config,
        resources=Resources(cpu_threads=args.threads, memory_mb=8192),
        workdir=work,
        rundir=work / "run",
    )
    started = time.perf_counter()
    sft.run(context)
    metrics = context.metrics
    return {
        "tokens_per_s": metrics["tokens_per_s"],
        "s_per_step": metrics["seconds"] / metrics["steps"],
        "trainable": metrics["trainable_params"],
        "total": metrics["total_params"],
        "wall_s": time.perf_counter() - started,
        "loss": metrics["final_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("100m", "20m"), default="100m")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="full,lora,qlora", help="Comma-separated; full is the baseline.")
    parser.add_argument("--quick", action="store_true", help="2 steps, batch 2, 128 tokens.")
    parser.add_argument("--json", action="store_true", help="Also print the results as JSON.")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch, args.max_length = 2, 2, 128
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "qlora" in methods:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            print("qlora skipped: bitsandbytes is not installed (pip install 'stratum[qlora]')")
            methods.remove("qlora")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        root = Path(tmp)
        base = build_llama(root / "llama", args.size)
        data = root / "chat.jsonl"
        data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in _rows(200)), encoding="utf-8")
        results = {}
        for method in methods:
            results[method] = _run(base, data, root / method, method, args)
    load = os.getloadavg()
    print(
        f"Training throughput, {args.size} Llama, batch {args.batch}, {args.steps} steps, "
        f"{args.threads} threads, torch {torch.__version__}; load average {load[0]:.1f} {load[1]:.1f}"
    )
    print(f"{'method':<8}{'trainable':>14}{'tokens/s':>11}{'s/step':>9}{'wall s':>9}{'loss':>9}")
    for method, r in results.items():
        share = f"{r['trainable'] / r['total']:.2%}"
        print(
            f"{method:<8}{share:>14}{r['tokens_per_s']:>11.1f}{r['s_per_step']:>9.2f}"
            f"{r['wall_s']:>9.1f}{r['loss']:>9.3f}"
        )
    if "full" in results:
        for method in (m for m in results if m != "full"):
            speedup = results[method]["tokens_per_s"] / results["full"]["tokens_per_s"]
            print(f"{method} / full tokens/s: {speedup:.2f}x (baseline: full fine-tuning, same run)")
    if args.json:
        print(json.dumps(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
