"""The open-loop load generator of benchmarks/load.py: its schedule, its bounds, and the raw HTTP
poster it sends with (against a tiny loopback server, so every number it reports is checkable)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from load import RawPoster, arrival_offsets, run_open_loop

ANSWER = {"choices": [{"message": {"role": "assistant", "content": "你好 Stratum"}}]}


_HANDLERS: set[asyncio.Task[None]] = set()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers POSTs on one connection: /len with content-length, /chunked chunked, /close then
    closes, /fail with 500, /slow after 2 s."""
    task = asyncio.current_task()
    assert task is not None
    _HANDLERS.add(task)
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            json.loads(await reader.readexactly(length))
            path = request_line.split()[1].decode()
            body = json.dumps(ANSWER).encode()
            if path == "/slow":
                await asyncio.sleep(2.0)
            if path == "/chunked":
                half = len(body) // 2
                chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
            elif path == "/fail":
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops")
            else:
                close = b"connection: close\r\n" if path == "/close" else b""
                writer.write(b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n%s" % (close, len(body), body))
                if close:
                    await writer.drain()
                    writer.close()
                    return
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        return  # a client gone, or the fixture stopping a /slow answer nobody waits for any more
    finally:
        _HANDLERS.discard(task)
        writer.close()


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    server = await asyncio.start_server(_handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    for task in list(_HANDLERS):  # /slow handlers still sleeping for clients that gave up
        task.cancel()
    await asyncio.gather(*_HANDLERS, return_exceptions=True)
    await server.wait_closed()


def test_arrival_schedules() -> None:
    uniform = arrival_offsets(100, 5, poisson=False, seed=0)
    assert uniform == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])
    poisson = arrival_offsets(200, 2000, poisson=True, seed=1)
    assert poisson == arrival_offsets(200, 2000, poisson=True, seed=1)  # seeded: same for both targets
    assert poisson != arrival_offsets(200, 2000, poisson=True, seed=2)
    assert 9.0 < poisson[-1] < 11.0  # 2000 arrivals at 200/s take ~10 s
    with pytest.raises(ValueError):
        arrival_offsets(0, 1, poisson=True, seed=0)


async def test_raw_poster_parses_lengths_chunks_closes_and_errors(base_url: str) -> None:
    for path in ("/len", "/chunked", "/close"):
        poster = RawPoster(base_url + path, {"q": "你好"}, {"authorization": "Bearer x"})
        try:
            for index in range(3):  # kept-alive (or re-opened after close) connections
                sample = await poster.post(index)
                assert sample.text == "你好 Stratum" and sample.latency > 0
        finally:
            await poster.close()
    failing = RawPoster(base_url + "/fail", {}, {})
    with pytest.raises(ValueError, match="HTTP 500"):
        await failing.post(0)
    await failing.close()
    with pytest.raises(ValueError):
        RawPoster("https://example.invalid/", {}, {})


async def test_open_loop_keeps_its_schedule_and_counts_what_it_could_not(base_url: str) -> None:
    poster = RawPoster(base_url + "/len", {}, {})
    try:
        result = await run_open_loop(poster.post, rate=200, count=60, seed=0)
    finally:
        await poster.close()
    assert (result.completed, result.errors, result.skipped, result.timed_out) == (60, [], 0, 0)
    # Latency counts from the scheduled slot, so it is never below the request's own time.
    assert all(latency > 0 for latency in result.latencies)

    # Responses slower than the schedule: requests pile up in flight instead of being delayed;
    # past max_in_flight, slots are skipped; the drain bound cancels what is still open.
    slow = RawPoster(base_url + "/slow", {}, {})
    try:
        result = await run_open_loop(slow.post, rate=100, count=20, seed=0, max_in_flight=5, drain_s=0.2)
    finally:
        await slow.close()
    # 20 slots in ~0.2 s, answers after 2 s: 5 go out, the other 15 find 5 in flight.
    assert (result.completed, result.timed_out, result.skipped) == (0, 5, 15)
    assert len(result.errors) == 5
