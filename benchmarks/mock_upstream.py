"""A minimal OpenAI-compatible upstream for measuring the gateway: no model, no artificial delay.

Run as its own process (``python benchmarks/mock_upstream.py --port N``) so it never shares an event
loop or a GIL with the load generator. Answers are fixed, so the harness can check that every
response arrived whole, whichever path it took.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# A few chunks, as the brief asks: enough that SSE framing and relaying show up in the cost.
CHUNKS = ("Hello", " from", " the", " mock", " upstream", ".")
ANSWER = "".join(CHUNKS)
# Fixed usage numbers: the mock has no tokenizer, and the harness only checks they come through.
PROMPT_TOKENS = 8


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": len(CHUNKS),
        "total_tokens": PROMPT_TOKENS + len(CHUNKS),
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _stream(model: str, include_usage: bool) -> AsyncIterator[bytes]:
    base = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    # Same shape as OpenAI: a role-only delta, content deltas, a finish delta, then usage if asked.
    yield chunk({"role": "assistant", "content": ""})
    for piece in CHUNKS:
        yield chunk({"content": piece})
    yield chunk({}, finish="stop")
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _usage()})
    yield b"data: [DONE]\n\n"


async def chat_completions(request: Request) -> Response:
    body = await request.json()
    model = str(body.get("model", "mock"))
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(_stream(model, include_usage), media_type="text/event-stream")
    return JSONResponse(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ANSWER},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(),
        }
    )


async def healthz(request: Request) -> Response:
    del request
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Same server stack as `stratum serve` (uvicorn, uvloop/httptools when installed), no access log,
    # so the direct path is as cheap as the gateway's own serving layer can be.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
