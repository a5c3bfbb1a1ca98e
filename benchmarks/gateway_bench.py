"""Gateway overhead: the mock upstream called directly vs. through a real `stratum serve` in front.

Both targets run for the whole benchmark and are measured alternately in ABBA order (direct,
gateway, gateway, direct, ...), so a neighbour's load that comes and goes lands on both about
equally. The same client, body, headers, concurrency and request count are used for both.

A third target, ``governed``, is the same gateway called with a project key instead of the admin
key: the project has rpm/tpm/token-budget limits (set high enough never to refuse) and the content
guard on (default policy: PII masking of prompts and streamed responses, injection flagged, plus a
list of sensitive words), so ``governed - gateway`` is what governance adds per request: key lookup
by project, quota reservation and settlement at three levels, the guard on the prompt and the
response, and the usage/audit record.

Besides the loaded modes (16 concurrent clients, JSON and SSE) one unloaded mode sends JSON requests
one at a time: there the added latency is the gateway's own per-request work, while under load it
also contains the time requests wait for the gateway's single event loop.

Open loop (``OPEN_TARGETS`` at each offered rate, e.g. 100 and 500 requests/s): JSON requests are
launched on a seeded Poisson schedule whatever the responses do, direct and through the gateway in
ABBA order. Latency runs from each request's scheduled send time, so queueing in the gateway (or in
the load generator, reported as "late" launches) shows up; achieved requests/s below the offered
rate means the target could not keep up. Bounded: ``rate x seconds`` requests per phase, at most
``OPEN_MAX_IN_FLIGHT`` outstanding, stragglers cancelled after a drain bound.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from load import (
    LATE_S,
    OpenLoopResult,
    RawPoster,
    Sample,
    make_client,
    post_json,
    post_stream,
    run_load,
    run_open_loop,
)
from mock_upstream import ANSWER
from processes import Progress, cpu_seconds, free_port, run_checked, running, stratum_command, stratum_env
from stats import ms, p50_p99, ratio

HERE = Path(__file__).resolve().parent
TARGETS = ("direct", "gateway", "governed")
OPEN_TARGETS = ("direct", "gateway")
OPEN_MAX_IN_FLIGHT = 512
OPEN_DRAIN_S = 20.0
# Limits on the governed project: present (so every level is checked and counted), never reached.
_GOVERNED_LIMITS = ("--rpm", "100000000", "--tpm", "1000000000", "--token-budget", "1000000000000")
# Sensitive words on the governed project: the automaton scans every prompt for them.
_GOVERNED_WORDS = 200


@dataclass(frozen=True)
class Mode:
    name: str
    stream: bool
    concurrency: int
    requests: int


@dataclass
class Phase:
    """Everything measured for one (mode, target) pair, pooled over its rounds."""

    mode: Mode
    target: str
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=lambda: {"client": 0.0, "mock": 0.0, "gateway": 0.0})

    def add(self, samples: list[Sample], errors: list[str], wall: float, cpu: dict[str, float]) -> None:
        for sample in samples:
            # A response that is not the mock's answer is a failure, not a fast success.
            if sample.text != ANSWER:
                self.errors.append(f"request {sample.index}: unexpected answer {sample.text[:60]!r}")
                continue
            self.latencies.append(sample.latency)
            if sample.ttft is not None:
                self.ttfts.append(sample.ttft)
        self.errors.extend(errors)
        self.wall_seconds += wall
        for name, seconds in cpu.items():
            self.cpu[name] += seconds

    def summary(self) -> dict[str, Any]:
        done = len(self.latencies)
        p50, p99 = p50_p99(self.latencies)
        ttft50, ttft99 = p50_p99(self.ttfts)
        return {
            "mode": self.mode.name,
            "concurrency": self.mode.concurrency,
            "target": self.target,
            "requests_ok": done,
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
            "wall_seconds": self.wall_seconds,
            "requests_per_s": ratio(done, self.wall_seconds),
            "latency_p50_s": p50,
            "latency_p99_s": p99,
            "ttft_p50_s": ttft50,
            "ttft_p99_s": ttft99,
            "cpu_ms_per_request": {k: ratio(v * 1000, done) for k, v in self.cpu.items()},
        }


def _body(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "mock",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
        "temperature": 0,
    }
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def run_gateway_bench(
    *,
    workdir: Path,
    json_requests: int,
    sse_requests: int,
    unloaded_requests: int,
    concurrency: int,
    warmup: int,
    rounds: int,
    progress: Progress,
    open_rates: tuple[float, ...] = (),
    open_seconds: float = 5.0,
) -> dict[str, Any]:
    modes = [
        Mode("json", stream=False, concurrency=concurrency, requests=json_requests),
        Mode("sse", stream=True, concurrency=concurrency, requests=sse_requests),
        Mode("json unloaded", stream=False, concurrency=1, requests=unloaded_requests),
    ]
    home, logs = workdir / "gateway-home", workdir / "logs"
    home.mkdir(parents=True)
    logs.mkdir(parents=True, exist_ok=True)
    mock_port, gateway_port = free_port(), free_port()
    admin_key = "sk-bench-" + secrets.token_urlsafe(24)  # >= 20 chars, new each run
    stratum = stratum_command()
    mock_command = [sys.executable, str(HERE / "mock_upstream.py"), "--port", str(mock_port)]
    with running(
        mock_command,
        env=stratum_env(home),
        cwd=workdir,
        log_path=logs / "mock.log",
        ready_url=f"http://127.0.0.1:{mock_port}/healthz",
        name="mock upstream",
        progress=progress,
    ) as mock:
        run_checked(
            [stratum, "models", "add", "mock", "--upstream", f"http://127.0.0.1:{mock_port}/v1"],
            env=stratum_env(home),
            cwd=workdir,
            log_path=logs / "models-add.log",
        )
        serve_env = stratum_env(
            home,
            port=str(gateway_port),
            admin_key=admin_key,
            demo_model="false",
            embeddings_model="false",
        )
        with running(
            [stratum, "serve"],
            env=serve_env,
            cwd=workdir,
            log_path=logs / "gateway.log",
            ready_url=f"http://127.0.0.1:{gateway_port}/readyz",
            name="stratum gateway",
            progress=progress,
        ) as gateway:
            project_key = _governed_key(stratum, home=home, workdir=workdir, logs=logs)
            gateway_url = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
            urls = {
                "direct": f"http://127.0.0.1:{mock_port}/v1/chat/completions",
                "gateway": gateway_url,
                "governed": gateway_url,
            }
            admin = {"authorization": f"Bearer {admin_key}"}
            phases = asyncio.run(
                _measure(
                    modes,
                    urls=urls,
                    headers={
                        "direct": admin,
                        "gateway": admin,
                        "governed": {"authorization": f"Bearer {project_key}"},
                    },
                    pids={"mock": mock.pid, "gateway": gateway.pid},
                    warmup=warmup,
                    rounds=rounds,
                    progress=progress,
                )
            )
            open_loop = asyncio.run(
                _measure_open(
                    open_rates,
                    seconds=open_seconds,
                    urls=urls,
                    headers=admin,
                    pids={"mock": mock.pid, "gateway": gateway.pid},
                    rounds=rounds,
                    progress=progress,
                )
            )
    report = _report(modes, phases, rounds=rounds, warmup=warmup)
    report["open_loop"] = _open_report(open_loop, seconds=open_seconds, rounds=rounds)
    return report


@dataclass
class OpenPhase:
    """One (offered rate, target) pair of the open-loop runs, pooled over its rounds."""

    rate: float
    target: str
    runs: list[OpenLoopResult] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=lambda: {"client": 0.0, "mock": 0.0, "gateway": 0.0})

    def summary(self) -> dict[str, Any]:
        latencies = [x for run in self.runs for x in run.latencies]
        completed = sum(run.completed for run in self.runs)
        wall = sum(run.wall_seconds for run in self.runs)
        p50, p99 = p50_p99(latencies)
        return {
            "offered_per_s": self.rate,
            "target": self.target,
            "scheduled": sum(run.scheduled for run in self.runs),
            "completed": completed,
            "errors": sum(len(run.errors) for run in self.runs),
            "first_errors": [e for run in self.runs for e in run.errors][:3],
            "late_launches": sum(run.late for run in self.runs),
            "skipped": sum(run.skipped for run in self.runs),
            "timed_out": sum(run.timed_out for run in self.runs),
            "achieved_per_s": ratio(completed, wall),
            "latency_p50_s": p50,
            "latency_p99_s": p99,
            "cpu_ms_per_request": {k: ratio(v * 1000, completed) for k, v in self.cpu.items()},
        }


async def _measure_open(
    rates: tuple[float, ...],
    *,
    seconds: float,
    urls: dict[str, str],
    headers: dict[str, str],
    pids: dict[str, int],
    rounds: int,
    progress: Progress,
) -> list[OpenPhase]:
    phases = {(rate, target): OpenPhase(rate, target) for rate in rates for target in OPEN_TARGETS}
    posters = {target: RawPoster(urls[target], _body(False), headers) for target in OPEN_TARGETS}

    def checked(poster: RawPoster) -> Callable[[int], Awaitable[Sample]]:
        async def send(index: int) -> Sample:
            sample = await poster.post(index)
            # A response that is not the mock's answer is a failure, not a fast success.
            if sample.text != ANSWER:
                raise ValueError(f"unexpected answer {sample.text[:60]!r}")
            return sample

        return send

    try:
        for rate in rates:
            count = max(1, round(rate * seconds / rounds))
            for round_index in range(rounds):
                order = OPEN_TARGETS if round_index % 2 == 0 else OPEN_TARGETS[::-1]
                for target in order:
                    before = _cpu(pids)
                    result = await run_open_loop(
                        checked(posters[target]),
                        rate=rate,
                        count=count,
                        seed=round_index,  # both targets get the same arrival times in a round
                        max_in_flight=OPEN_MAX_IN_FLIGHT,
                        drain_s=OPEN_DRAIN_S,
                    )
                    after = _cpu(pids)
                    phase = phases[rate, target]
                    phase.runs.append(result)
                    for name in before:
                        phase.cpu[name] += after[name] - before[name]
                    progress(
                        f"gateway open loop: {rate:.0f}/s {target:7} round {round_index + 1}/{rounds}: "
                        f"{result.completed}/{count} done, {result.achieved_per_s:.0f}/s achieved, "
                        f"{result.late} late, {result.skipped} skipped, {len(result.errors)} errors"
                    )
                    await asyncio.sleep(0.5)  # let both servers settle between phases
    finally:
        for poster in posters.values():
            await poster.close()
    return list(phases.values())


def _open_report(phases: list[OpenPhase], *, seconds: float, rounds: int) -> dict[str, Any]:
    summaries = [phase.summary() for phase in phases]
    by_key = {(s["offered_per_s"], s["target"]): s for s in summaries}
    added = []
    for rate in sorted({s["offered_per_s"] for s in summaries}):
        direct, gateway = by_key[rate, "direct"], by_key[rate, "gateway"]
        added.append(
            {
                "offered_per_s": rate,
                "added_p50_s": gateway["latency_p50_s"] - direct["latency_p50_s"],
                "added_p99_s": gateway["latency_p99_s"] - direct["latency_p99_s"],
                "achieved_ratio": ratio(gateway["achieved_per_s"], direct["achieved_per_s"]),
            }
        )
    return {
        "seconds_per_rate": seconds,
        "rounds": rounds,
        "late_after_s": LATE_S,
        "phases": summaries,
        "added": added,
    }


def _governed_key(stratum: str, *, home: Path, workdir: Path, logs: Path) -> str:
    """A project key on a project with limits and the content guard (written into the store the
    running gateway reads)."""
    env = stratum_env(home)

    def cli(*args: str) -> None:
        run_checked([stratum, *args], env=env, cwd=workdir, log_path=logs / "governed-setup.log")

    # The admin key's requests use the platform default policy: all off, so the "gateway" target is
    # the gateway without governance and "governed" carries all of it.
    allow = [f"{t}=allow" for t in ("id_card", "phone", "bank_card", "email", "ipv4", "passport")]
    cli(
        "guard",
        "set",
        *[f"--prompt={a}" for a in allow],
        *[f"--response={a}" for a in allow],
        "--injection=off",
    )
    cli("orgs", "create", "bench")
    cli("projects", "create", "bench/governed", *_GOVERNED_LIMITS)
    words = workdir / "sensitive-words.txt"
    words.write_text("\n".join(f"敏感词{i}" for i in range(_GOVERNED_WORDS)), encoding="utf-8")
    cli("guard", "words", "--project", "bench/governed", "--add-file", str(words))
    # The project's own policy: the defaults (PII masked both ways, injection flagged).
    cli(
        "guard",
        "set",
        "--project",
        "bench/governed",
        "--injection=flag",
        *[
            f"--{side}={t}=mask"
            for side in ("prompt", "response")
            for t in ("id_card", "phone", "bank_card", "passport")
        ],
    )
    created = subprocess.run(
        [stratum, "keys", "create", "bench/governed", "--role", "developer", "--json"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return str(json.loads(created.stdout)["key"])


async def _measure(
    modes: list[Mode],
    *,
    urls: dict[str, str],
    headers: dict[str, dict[str, str]],
    pids: dict[str, int],
    warmup: int,
    rounds: int,
    progress: Progress,
) -> dict[tuple[str, str], Phase]:
    phases = {(mode.name, target): Phase(mode, target) for mode in modes for target in TARGETS}

    def sender(mode: Mode, target: str) -> Any:
        post = post_stream if mode.stream else post_json
        body = _body(mode.stream)

        async def send(client: httpx.AsyncClient, index: int) -> Sample:
            return await post(client, urls[target], body, headers[target], index)

        return send

    async with make_client(max(mode.concurrency for mode in modes)) as client:
        # Warm-up (excluded): connection pools, the gateway's first DB sessions and upstream client,
        # and CPython's lazily built caches, on both paths and in every mode.
        for mode in modes:
            for target in TARGETS:
                result = await run_load(
                    client, sender(mode, target), count=warmup, concurrency=mode.concurrency
                )
                if result.errors:
                    raise RuntimeError(f"warm-up of {target}/{mode.name} failed: {result.errors[0]}")
        progress(f"gateway: warm-up done ({warmup} requests per target and mode)")
        for mode in modes:
            for round_index, count in enumerate(_split(mode.requests, rounds)):
                # ABBA: alternate which target goes first, so linear drift in background load cancels.
                order = TARGETS if round_index % 2 == 0 else TARGETS[::-1]
                for target in order:
                    before = _cpu(pids)
                    result = await run_load(
                        client, sender(mode, target), count=count, concurrency=mode.concurrency
                    )
                    after = _cpu(pids)
                    phases[mode.name, target].add(
                        result.samples,
                        result.errors,
                        result.wall_seconds,
                        {k: after[k] - before[k] for k in before},
                    )
                    progress(
                        f"gateway: {mode.name:13} {target:7} round {round_index + 1}/{rounds}: "
                        f"{count} requests in {result.wall_seconds:.2f} s ({len(result.errors)} errors)"
                    )
    return phases


def _split(total: int, parts: int) -> list[int]:
    """``total`` requests over ``parts`` rounds, as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    # process_time covers the load generator's whole process: it runs nothing else while measuring.
    return {"client": time.process_time(), **{name: cpu_seconds(pid) for name, pid in pids.items()}}


def _report(
    modes: list[Mode], phases: dict[tuple[str, str], Phase], *, rounds: int, warmup: int
) -> dict[str, Any]:
    summaries = [phases[mode.name, target].summary() for mode in modes for target in TARGETS]
    overhead = []
    for mode in modes:
        direct, gateway = phases[mode.name, "direct"].summary(), phases[mode.name, "gateway"].summary()
        overhead.append(
            {
                "mode": mode.name,
                "concurrency": mode.concurrency,
                # Difference of percentiles (the two runs are not paired request by request).
                "added_p50_s": gateway["latency_p50_s"] - direct["latency_p50_s"],
                "added_p99_s": gateway["latency_p99_s"] - direct["latency_p99_s"],
                "throughput_ratio": ratio(gateway["requests_per_s"], direct["requests_per_s"]),
                "gateway_cpu_ms_per_request": gateway["cpu_ms_per_request"]["gateway"],
            }
        )
    governance = []
    for mode in modes:
        plain, governed = phases[mode.name, "gateway"].summary(), phases[mode.name, "governed"].summary()
        governance.append(
            {
                "mode": mode.name,
                "concurrency": mode.concurrency,
                "added_p50_s": governed["latency_p50_s"] - plain["latency_p50_s"],
                "added_p99_s": governed["latency_p99_s"] - plain["latency_p99_s"],
                "throughput_ratio": ratio(governed["requests_per_s"], plain["requests_per_s"]),
                "added_cpu_ms_per_request": governed["cpu_ms_per_request"]["gateway"]
                - plain["cpu_ms_per_request"]["gateway"],
            }
        )
    return {
        "rounds": rounds,
        "warmup_per_target_and_mode": warmup,
        "phases": summaries,
        "overhead": overhead,
        "governance": governance,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"### Gateway overhead (mock upstream on loopback, {report['rounds']} ABBA rounds, "
        f"{report['warmup_per_target_and_mode']} warm-up requests per target and mode excluded)",
        "",
        "| mode | clients | target | ok | errors | req/s | p50 ms | p99 ms | TTFT p50 ms | "
        "CPU ms/req: client | mock | gateway |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in report["phases"]:
        cpu = p["cpu_ms_per_request"]
        lines.append(
            f"| {p['mode']} | {p['concurrency']} | {p['target']} | {p['requests_ok']} | {p['errors']} | "
            f"{p['requests_per_s']:.0f} | "
            f"{ms(p['latency_p50_s'])} | {ms(p['latency_p99_s'])} | {ms(p['ttft_p50_s'])} | "
            f"{cpu['client']:.2f} | {cpu['mock']:.2f} | {cpu['gateway']:.2f} |"
        )
    lines += [
        "",
        "| mode | clients | added latency p50 ms | added latency p99 ms | throughput gateway/direct | "
        "gateway CPU ms/req |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for o in report["overhead"]:
        lines.append(
            f"| {o['mode']} | {o['concurrency']} | {ms(o['added_p50_s'])} | {ms(o['added_p99_s'])} | "
            f"{o['throughput_ratio']:.2f}x | {o['gateway_cpu_ms_per_request']:.2f} |"
        )
    lines += [
        "",
        "Governance (project key with rpm/tpm/budget at three levels + content guard + audit, "
        "vs. the same gateway with the admin key):",
        "",
        "| mode | clients | added p50 ms | added p99 ms | throughput governed/admin | added CPU ms/req |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for g in report.get("governance", []):
        lines.append(
            f"| {g['mode']} | {g['concurrency']} | {ms(g['added_p50_s'])} | {ms(g['added_p99_s'])} | "
            f"{g['throughput_ratio']:.2f}x | {g['added_cpu_ms_per_request']:.2f} |"
        )
    open_loop = report.get("open_loop")
    if open_loop and open_loop["phases"]:
        lines += ["", open_markdown(open_loop)]
    return "\n".join(lines)


def open_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Open loop (JSON, Poisson arrivals, {report['seconds_per_rate']:.0f} s per offered rate and "
        f"target in {report['rounds']} ABBA rounds; latency from the scheduled send time; late = "
        f"launched > {report['late_after_s'] * 1000:.0f} ms after its slot by the load generator):",
        "",
        "| offered req/s | target | scheduled | done | errors | late | skipped | achieved req/s | "
        "p50 ms | p99 ms | CPU ms/req: client | gateway |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in report["phases"]:
        cpu = p["cpu_ms_per_request"]
        lines.append(
            f"| {p['offered_per_s']:.0f} | {p['target']} | {p['scheduled']} | {p['completed']} | "
            f"{p['errors']} | {p['late_launches']} | {p['skipped']} | {p['achieved_per_s']:.0f} | "
            f"{ms(p['latency_p50_s'])} | {ms(p['latency_p99_s'])} | "
            f"{cpu['client']:.2f} | {cpu['gateway']:.2f} |"
        )
    lines += [
        "",
        "| offered req/s | added latency p50 ms | added latency p99 ms | achieved gateway/direct |",
        "|--:|--:|--:|--:|",
    ]
    for a in report["added"]:
        lines.append(
            f"| {a['offered_per_s']:.0f} | {ms(a['added_p50_s'])} | {ms(a['added_p99_s'])} | "
            f"{a['achieved_ratio']:.2f}x |"
        )
    return "\n".join(lines)
