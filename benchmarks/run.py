"""`make bench`: gateway overhead and engine throughput, each against a baseline from the same run.

    python benchmarks/run.py [--quick] [--skip-gateway] [--skip-engine] [--keep-workdir]

Progress goes to stderr, the markdown tables to stdout, and the same numbers as JSON to
benchmarks/results/latest.json. The machine this runs on is small and shared, so absolute numbers
move from run to run: read the ratios, and the load average printed with them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from engine_bench import markdown as engine_markdown
from engine_bench import run_engine_bench
from gateway_bench import markdown as gateway_markdown
from gateway_bench import run_gateway_bench
from processes import Progress

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "latest.json"
DEFAULT_CACHE = Path.home() / ".cache" / "stratum-bench"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Stratum benchmarks (loopback only, bounded).")
    parser.add_argument("--concurrency", type=int, default=16, help="Concurrent clients (default 16).")
    parser.add_argument("--json-requests", type=int, default=400, help="Non-streaming gateway requests.")
    parser.add_argument("--sse-requests", type=int, default=200, help="Streaming gateway requests.")
    parser.add_argument(
        "--unloaded-requests", type=int, default=100, help="Gateway requests sent one at a time."
    )
    parser.add_argument("--warmup", type=int, default=32, help="Untimed requests per target and mode.")
    parser.add_argument(
        "--rounds", type=int, default=2, help="ABBA rounds the gateway requests are split in."
    )
    parser.add_argument(
        "--open-rates", default="100,500", help="Open-loop offered loads (requests/s); '' skips them."
    )
    parser.add_argument(
        "--open-seconds", type=float, default=10.0, help="Open-loop seconds per offered rate and target."
    )
    parser.add_argument("--engine-requests", type=int, default=64, help="Requests per engine round.")
    parser.add_argument("--engine-rounds", type=int, default=3, help="Interleaved engine rounds.")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens / max_new_tokens.")
    parser.add_argument(
        "--engine-concurrency", default="1,8,16,32", help="Streaming clients the engine is measured with."
    )
    parser.add_argument(
        "--engine-llama",
        default="100m",
        choices=["100m", "20m", "none"],
        help="Also measure a Llama of this size built from a config ('none': the demo model only).",
    )
    parser.add_argument("--llama-requests", type=int, default=32, help="Requests per Llama configuration.")
    parser.add_argument("--llama-max-tokens", type=int, default=32, help="max_tokens for the Llama.")
    # 1 by default: the demo model's matrices are tiny, so a second intra-op thread buys little, and
    # on a 2-core box it fights the HTTP client and the event loop for the other core (measured:
    # 2 threads ran 2-4x slower for the first passes and far noisier under a neighbour's load).
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads, baseline and server.")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="Where the demo model is built once."
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file.")
    parser.add_argument("--quick", action="store_true", help="Smaller counts, for checking the harness.")
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--keep-workdir", action="store_true", help="Keep server homes and logs.")
    args = parser.parse_args(argv)
    if args.quick:
        args.json_requests, args.sse_requests, args.unloaded_requests, args.warmup = 64, 32, 16, 8
        args.open_seconds = 2.0
        args.engine_requests, args.engine_rounds = 16, 2
        args.engine_llama, args.llama_requests = "20m", 16
    return args


def _progress(started: float) -> Progress:
    def report(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {line}", file=sys.stderr, flush=True)

    return report


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    del frame
    # Raising unwinds through every `finally`, so the servers this run started are stopped.
    raise SystemExit(128 + signum)


def _source_version() -> str:
    """The commit measured, and whether src/ had uncommitted changes (the editable install runs them)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=HERE.parent, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{commit} + uncommitted changes in src/" if dirty else commit


def _environment(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "source": _source_version(),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        # torch's own default; the engine benchmark sets its count explicitly (--torch-threads).
        "torch_default_threads": torch.get_num_threads(),
        "platform": platform.platform(terse=True),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }


def _finite(value: Any) -> Any:
    """NaN (a metric with no samples) as null: NaN is not valid JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    load_start = " / ".join(f"{x:.2f}" for x in env["load_average_start"])
    load_end = " / ".join(f"{x:.2f}" for x in env["load_average_end"])
    parts = [
        "## Stratum benchmarks",
        "",
        "| machine | value |",
        "|---|---|",
        f"| started | {env['started_at']} |",
        f"| source | {env['source']} |",
        f"| CPUs / torch default threads | {env['cpu_count']} / {env['torch_default_threads']} |",
        f"| load average 1/5/15 min at start | {load_start} |",
        f"| load average 1/5/15 min at end | {load_end} |",
        f"| Python / torch | {env['python']} / {env['torch']} |",
        f"| total run time | {env['duration_seconds']:.0f} s |",
    ]
    if "gateway" in results:
        parts += ["", gateway_markdown(results["gateway"])]
    if "engine" in results:
        parts += ["", engine_markdown(results["engine"])]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.perf_counter()
    progress = _progress(started)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results: dict[str, Any] = {"environment": _environment(args)}
    progress(f"load average at start: {results['environment']['load_average_start']}")
    workdir = Path(tempfile.mkdtemp(prefix="stratum-bench-"))
    try:
        if not args.skip_gateway:
            results["gateway"] = run_gateway_bench(
                workdir=workdir,
                json_requests=args.json_requests,
                sse_requests=args.sse_requests,
                unloaded_requests=args.unloaded_requests,
                concurrency=args.concurrency,
                warmup=args.warmup,
                rounds=args.rounds,
                progress=progress,
                open_rates=tuple(float(r) for r in args.open_rates.split(",") if r.strip()),
                open_seconds=args.open_seconds,
            )
        if not args.skip_engine:
            results["engine"] = run_engine_bench(
                workdir=workdir,
                cache=args.cache.expanduser(),
                requests=args.engine_requests,
                rounds=args.engine_rounds,
                concurrency=[int(n) for n in args.engine_concurrency.split(",")],
                max_tokens=args.max_tokens,
                torch_threads=args.torch_threads,
                progress=progress,
                llama=None if args.engine_llama == "none" else args.engine_llama,
                llama_requests=args.llama_requests,
                llama_max_tokens=args.llama_max_tokens,
            )
    finally:
        if args.keep_workdir:
            progress(f"kept server homes and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["environment"]["duration_seconds"] = time.perf_counter() - started
    print(markdown(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_finite(results), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    progress(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
