"""Load generators: closed loop (a fixed number of requests, a fixed number of workers) and open loop
(requests launched on a fixed schedule, whatever the responses do).

Closed loop (each worker sends its next request when the previous one finished) keeps the offered
load bounded by the concurrency, so a slow target is measured, never flooded. Open loop
(``run_open_loop``) is how traffic from many independent users arrives: a slow target makes
requests queue, and their latency, timed from their scheduled send time, shows it. Every request is timed
on the client, end to end; streamed requests also record when each content event arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx


@dataclass
class Sample:
    index: int
    latency: float
    text: str = ""
    # Arrival times of non-empty content events, relative to sending the request.
    content_times: list[float] = field(default_factory=list)
    completion_tokens: int | None = None

    @property
    def ttft(self) -> float | None:
        return self.content_times[0] if self.content_times else None

    @property
    def gaps(self) -> list[float]:
        """Inter-token latency: time between consecutive content events."""
        return [b - a for a, b in zip(self.content_times, self.content_times[1:], strict=False)]


@dataclass
class LoadResult:
    samples: list[Sample]
    errors: list[str]
    wall_seconds: float


Send = Callable[[httpx.AsyncClient, int], Awaitable[Sample]]


def make_client(concurrency: int) -> httpx.AsyncClient:
    # One connection per worker, kept alive: the benchmark measures serving, not TCP handshakes.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0))


async def run_load(client: httpx.AsyncClient, send: Send, *, count: int, concurrency: int) -> LoadResult:
    """Send ``count`` requests (indices 0..count-1) with ``concurrency`` workers."""
    samples: list[Sample] = []
    errors: list[str] = []
    next_index = iter(range(count))

    async def worker() -> None:
        for index in next_index:  # the shared iterator hands each index to exactly one worker
            try:
                samples.append(await send(client, index))
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                errors.append(f"request {index}: {type(exc).__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return LoadResult(samples=samples, errors=errors, wall_seconds=time.perf_counter() - started)


async def post_json(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], index: int
) -> Sample:
    started = time.perf_counter()
    response = await client.post(url, json=body, headers=headers)
    response.raise_for_status()
    payload = response.json()  # parsed inside the timed span: a client has to parse it too
    latency = time.perf_counter() - started
    return Sample(
        index=index,
        latency=latency,
        text=payload["choices"][0]["message"]["content"] or "",
        completion_tokens=(payload.get("usage") or {}).get("completion_tokens"),
    )


async def post_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], index: int
) -> Sample:
    """One OpenAI-style SSE chat completion; usage comes from the final event (include_usage)."""
    sample = Sample(index=index, latency=0.0)
    pieces: list[str] = []
    started = time.perf_counter()
    async with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise ValueError(f"error event in stream: {event['error']}")
            if event.get("usage"):
                sample.completion_tokens = int(event["usage"]["completion_tokens"])
            for choice in event.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:  # the role-only opening delta is not a token
                    sample.content_times.append(time.perf_counter() - started)
                    pieces.append(content)
    sample.latency = time.perf_counter() - started
    sample.text = "".join(pieces)
    return sample


@dataclass
class OpenLoopResult:
    """An open-loop run: requests launched on a schedule, whatever the responses do."""

    offered_per_s: float
    scheduled: int
    # Per completed request: seconds from its *scheduled* send time to its last byte, so the time a
    # request waited because the client or the target fell behind counts (no coordinated omission).
    latencies: list[float]
    errors: list[str]
    # Launched more than LATE_S after their slot (the load generator itself fell behind).
    late: int
    # Never launched: the run's time bound passed, or too many requests were already in flight.
    skipped: int
    # Launched but not answered before the drain bound (counted in errors too).
    timed_out: int
    wall_seconds: float  # first slot to last completion (or the drain bound)

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def achieved_per_s(self) -> float:
        return self.completed / self.wall_seconds if self.wall_seconds else math.nan


# A launch later than this after its slot counts as "late": the generator missed its schedule.
LATE_S = 0.005


def arrival_offsets(rate: float, count: int, *, poisson: bool, seed: int) -> list[float]:
    """Send times (seconds from the start) of ``count`` requests at ``rate`` per second: Poisson
    arrivals (exponential gaps, seeded) or a uniform grid."""
    if rate <= 0:
        raise ValueError("the offered rate must be positive")
    rng = random.Random(seed)
    offsets, t = [], 0.0
    for _ in range(count):
        offsets.append(t)
        t += rng.expovariate(rate) if poisson else 1.0 / rate
    return offsets


class RawPoster:
    """A minimal HTTP/1.1 client for one URL and one JSON body, over kept-alive loopback connections.

    The open-loop generator must keep its schedule: httpx spends ~1.5-3 ms of CPU per request,
    which at 500 requests/s is most of a core on a 2-core box, so the generator would fall behind
    before the target does. This one sends prebuilt bytes and parses only the status line, the
    headers it needs and the body: a small fraction of that. Plain http:// on loopback only.
    """

    def __init__(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        parsed = urlsplit(url)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError(f"RawPoster speaks plain http only, not {url}")
        self.host, self.port = parsed.hostname, parsed.port or 80
        payload = json.dumps(body).encode()
        head = [
            f"POST {parsed.path or '/'} HTTP/1.1",
            f"host: {parsed.netloc}",
            "content-type: application/json",
            f"content-length: {len(payload)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        self._request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: set[asyncio.StreamWriter] = set()

    async def post(self, index: int) -> Sample:
        """One request; the sample's text is the answer's content (raises on a non-200)."""
        started = time.perf_counter()
        reused = bool(self._idle)
        if reused:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.add(writer)
        try:
            writer.write(self._request)
            status_line = await reader.readline()
            if not status_line and reused:
                # The server closed this idle connection (keep-alive timeout): once more, anew.
                writer.close()
                self._all.discard(writer)
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self._all.add(writer)
                writer.write(self._request)
                status_line = await reader.readline()
            parts = status_line.split(None, 2)
            if len(parts) < 2:
                raise ValueError(f"no HTTP status line: {status_line!r}")
            length, chunked, close = None, False, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    chunked = True
                elif name == "connection" and value == "close":
                    close = True
            if chunked:
                pieces = []
                while size := int((await reader.readline()).split(b";")[0], 16):
                    pieces.append(await reader.readexactly(size))
                    await reader.readline()
                await reader.readline()
                body = b"".join(pieces)
            elif length is not None:
                body = await reader.readexactly(length)
            else:
                body, close = await reader.read(), True
        except BaseException:
            writer.close()
            self._all.discard(writer)
            raise
        if close:
            writer.close()
            self._all.discard(writer)
        else:
            self._idle.append((reader, writer))
        if parts[1] != b"200":
            raise ValueError(f"HTTP {parts[1].decode()}: {body[:200]!r}")
        payload = json.loads(body)
        return Sample(
            index=index,
            latency=time.perf_counter() - started,
            text=payload["choices"][0]["message"]["content"] or "",
        )

    async def close(self) -> None:
        writers = list(self._all)
        self._all.clear()
        self._idle.clear()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def run_open_loop(
    send: Callable[[int], Awaitable[Sample]],
    *,
    rate: float,
    count: int,
    poisson: bool = True,
    seed: int = 0,
    max_in_flight: int = 1000,
    drain_s: float = 30.0,
) -> OpenLoopResult:
    """Launch ``count`` requests at ``rate``/s on a fixed schedule, independent of the responses.

    Bounded: at most ``max_in_flight`` outstanding (a slot that finds that many is skipped, not
    queued), no launch after the schedule's end + 1 s, and requests still open ``drain_s`` after the
    last launch are cancelled and counted as timed out.
    """
    offsets = arrival_offsets(rate, count, poisson=poisson, seed=seed)
    latencies: list[float] = []
    errors: list[str] = []
    tasks: set[asyncio.Task[None]] = set()
    late = skipped = 0

    async def one(index: int, slot: float) -> None:
        try:
            sample = await send(index)
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
            errors.append(f"request {index}: {type(exc).__name__}: {exc}")
            return
        # send() timed from its own start; add how late that start was against the slot.
        latencies.append(sample.latency + (sample_start[index] - slot))

    sample_start: dict[int, float] = {}
    start = time.perf_counter() + 0.01
    last_launch_by = start + offsets[-1] + 1.0 if offsets else start
    for index, offset in enumerate(offsets):
        slot = start + offset
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.perf_counter()
        if now > last_launch_by or len(tasks) >= max_in_flight:
            skipped += 1
            continue
        if now - slot > LATE_S:
            late += 1
        sample_start[index] = now
        task = asyncio.create_task(one(index, slot))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    timed_out = 0
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=drain_s)
        for task in pending:
            task.cancel()
        timed_out = len(pending)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            errors.extend(f"timed out after the {drain_s:.0f} s drain bound" for _ in range(timed_out))
    wall = time.perf_counter() - start
    return OpenLoopResult(
        offered_per_s=rate,
        scheduled=count,
        latencies=latencies,
        errors=errors,
        late=late,
        skipped=skipped,
        timed_out=timed_out,
        wall_seconds=wall,
    )
