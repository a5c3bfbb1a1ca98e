"""What chat and text completions share around a response: metrics recording and SSE framing."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from stratum.gateway.metrics import Metrics

VERSION_HEADER = "x-stratum-model-version"


class Recorder:
    """Records one request's status and latency once, whichever way it ends."""

    def __init__(self, metrics: Metrics, *, endpoint: str, model: str, started: float) -> None:
        self.metrics, self.endpoint, self.model, self.started = metrics, endpoint, model, started
        self._status: int | None = None
        self._recorded = False
        # Set by the route once the serving version is known (gateway.serving.served_hook).
        self.on_done: Callable[[int, float, str | None], None] | None = None
        self.response_id: str | None = None

    def failed(self, status: int) -> None:
        self._status = status

    def done(self, status: int) -> None:
        if not self._recorded:
            self._recorded = True
            seconds = time.perf_counter() - self.started
            self.metrics.observe(endpoint=self.endpoint, model=self.model, status=status, seconds=seconds)
            if self.on_done is not None:
                self.on_done(status, seconds, self.response_id)

    @contextlib.asynccontextmanager
    async def streaming(self) -> AsyncIterator[None]:
        # 499 (nginx's "client closed request") marks a stream the client abandoned.
        status = 499
        try:
            yield
            status = self._status or 200
        finally:
            self.done(status)


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its body generator however the response ends.

    Starlette cancels the response task when the client leaves; if the body generator was parked
    at a ``yield`` (waiting for the client to read), nothing else closes it and its generation
    would be released only when the garbage collector finds it. Closing it here frees the engine
    slot at once.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


def sse_response(body: AsyncIterator[bytes], *, headers: dict[str, str]) -> StreamingResponse:
    return _ClosingStreamingResponse(
        body,
        media_type="text/event-stream",
        headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
    )
