"""A closed-loop load generator: a fixed number of requests, a fixed number of workers.

Closed loop (each worker sends its next request when the previous one finished) keeps the offered
load bounded by the concurrency, so a slow target is measured, never flooded. Every request is timed
on the client, end to end; streamed requests also record when each content event arrived.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

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
