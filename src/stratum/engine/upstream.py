"""An OpenAI-compatible upstream (vLLM, llama.cpp server, TGI, a cloud API) behind ``TextEngine``.

The upstream is always called with ``stream: true`` and ``stream_options.include_usage`` so the
gateway sees tokens as they come and the upstream's own usage numbers at the end. Connection
errors, 429 and 5xx are retried with backoff only before the first byte has been received; after
that a failure ends the stream with an error (never a silent, truncated success).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx

from stratum.engine.base import GenerationChunk, GenerationRequest, ModelInfo
from stratum.errors import InvalidRequest, RateLimited, StratumError, UpstreamError

_RETRIES = 2  # attempts after the first; enough to ride out a restart, short enough to fail fast
_BACKOFF_S = 0.25
_HEALTH_TIMEOUT_S = 5.0


def shared_client(*, timeout: float = 60.0, http2: bool = True) -> httpx.AsyncClient:
    """One connection pool for every upstream: keep-alive (and HTTP/2 multiplexing where the
    upstream speaks it over TLS) is shared instead of each engine opening its own connections."""
    try:
        import h2  # noqa: F401
    except ImportError:  # httpx[http2] not installed: stay on HTTP/1.1
        http2 = False
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        http2=http2,
    )


_FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


class UpstreamEngine:
    """Proxies one served name to ``model`` at ``base_url`` (e.g. ``http://gpu-box:8000/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
        retries: int = _RETRIES,
        backoff_s: float = _BACKOFF_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.info = ModelInfo(extra={"upstream": self.base_url, "upstream_model": model})
        self._transport = transport
        # A shared client (``shared_client``) is owned by the caller and never closed here.
        self._owns_client = client is None
        self._client: httpx.AsyncClient | None = client
        self.retries, self.backoff_s = retries, backoff_s
        self._in_flight = 0

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                transport=self._transport,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            )

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None

    async def check_health(self) -> bool:
        """``GET {base_url}/models`` answers below 500 in time (401/404 still mean "reachable")."""
        if self._client is None:
            await self.start()
        assert self._client is not None
        try:
            headers = self._headers()
            response = await self._client.get(
                f"{self.base_url}/models", headers=headers, timeout=_HEALTH_TIMEOUT_S
            )
        except (httpx.HTTPError, StratumError):
            return False
        return response.status_code < 500

    @property
    def queue_depth(self) -> int:
        return 0

    def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        return None  # only the upstream knows its tokenizer

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise UpstreamError(f"environment variable {self.api_key_env} (upstream API key) is not set")
            headers["authorization"] = f"Bearer {key}"
        return headers

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        p = request.params
        body: dict[str, Any] = {
            **request.passthrough,
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key, value in (("max_tokens", p.max_tokens), ("seed", p.seed)):
            if value is not None:
                body[key] = value
        body["temperature"] = p.temperature
        body["top_p"] = p.top_p
        if p.stop:
            body["stop"] = list(p.stop)
        if request.messages is not None:
            body["messages"] = list(request.messages)
            return "/chat/completions", body
        body["prompt"] = request.prompt or ""
        return "/completions", body

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        path, body = self._body(request)
        return self._stream(path, body, self._headers())

    async def _stream(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncIterator[GenerationChunk]:
        if self._client is None:
            await self.start()
        assert self._client is not None
        self._in_flight += 1
        try:
            async with self._open(path, body, headers) as response:
                async for chunk in _parse_events(response):
                    yield chunk
        finally:
            self._in_flight -= 1

    def _open(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> _RetryingStream:
        assert self._client is not None
        return _RetryingStream(
            self._client,
            f"{self.base_url}{path}",
            body,
            headers,
            retries=self.retries,
            backoff_s=self.backoff_s,
        )


class _RetryingStream:
    """Opens the streaming POST, retrying connect errors, 429 and 5xx before any byte arrived."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        *,
        retries: int = _RETRIES,
        backoff_s: float = _BACKOFF_S,
    ):
        self._client, self._url, self._body, self._headers = client, url, body, headers
        self._retries, self._backoff_s = retries, backoff_s
        self._context: Any = None

    async def __aenter__(self) -> httpx.Response:
        last: StratumError | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(backoff_delay(self._backoff_s, attempt))
            context = self._client.stream("POST", self._url, json=self._body, headers=self._headers)
            try:
                response = await context.__aenter__()
            except httpx.TransportError as exc:
                last = UpstreamError(
                    f"upstream {self._url} unreachable: {type(exc).__name__}", code="upstream_unreachable"
                )
                continue
            if response.status_code < 400:
                self._context = context
                return response
            await response.aread()
            error = _upstream_error(response)
            await context.__aexit__(None, None, None)
            if response.status_code == 429 or response.status_code >= 500:
                last = error
                continue
            raise error
        assert last is not None
        raise last

    async def __aexit__(self, *exc: object) -> None:
        if self._context is not None:
            await self._context.__aexit__(*exc)


def backoff_delay(base_s: float, attempt: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": uniform in [c/2, c] for c = base * 2**(attempt-1), so
    clients retrying after a shared hiccup do not come back in lock-step."""
    ceiling = base_s * 2 ** (attempt - 1)
    return (rng or random).uniform(ceiling / 2, ceiling)


def _upstream_error(response: httpx.Response) -> StratumError:
    try:
        detail = response.json().get("error", {})
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = response.text[:200]
    text = f"upstream returned {response.status_code}: {message or 'no detail'}"
    if response.status_code == 429:
        return RateLimited(text, code="upstream_rate_limited")
    if response.status_code in (400, 404, 422):
        return InvalidRequest(text, code="upstream_rejected")
    # 401/403 mean our stored credentials are wrong: the caller can't fix that, so it's a 502.
    return UpstreamError(text)


async def _parse_events(response: httpx.Response) -> AsyncIterator[GenerationChunk]:
    """Turn the upstream's SSE stream into chunks; the final chunk carries finish reason and usage."""
    finish: str | None = None
    prompt_tokens = completion_tokens = 0
    saw_usage = False
    text_chunks = 0
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                # Keep reading to the end of the body so httpx can reuse the connection.
                continue
            event = json.loads(data)
            if "error" in event:
                raise UpstreamError(f"upstream error mid-stream: {event['error']}")
            if event.get("usage"):
                saw_usage = True
                prompt_tokens = int(event["usage"].get("prompt_tokens", 0))
                completion_tokens = int(event["usage"].get("completion_tokens", 0))
            for choice in event.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content") or choice.get("text") or ""
                finish = choice.get("finish_reason") or finish
                tool_calls = delta.get("tool_calls")
                if text or tool_calls:
                    text_chunks += 1
                    yield GenerationChunk(
                        text=text,
                        prompt_tokens=prompt_tokens,
                        completion_tokens=text_chunks,
                        tool_calls=tuple(tool_calls) if tool_calls else None,
                    )
    except httpx.TransportError as exc:
        raise UpstreamError(
            f"upstream stream broke off: {type(exc).__name__}", code="upstream_stream_cut"
        ) from exc
    except json.JSONDecodeError as exc:
        raise UpstreamError("upstream sent a malformed event", code="upstream_bad_event") from exc
    if finish is None:
        raise UpstreamError("upstream stream ended without a finish reason", code="upstream_stream_cut")
    yield GenerationChunk(
        text="",
        prompt_tokens=prompt_tokens,
        # Without upstream usage, each content event is counted as one token (vLLM's granularity).
        completion_tokens=completion_tokens if saw_usage else text_chunks,
        finish_reason=finish if finish in _FINISH_REASONS else "stop",  # type: ignore[arg-type]
    )
