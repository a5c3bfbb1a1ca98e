"""A small streaming client for an OpenAI-compatible ``/chat/completions`` endpoint.

httpx + hand-rolled Server-Sent Events parsing rather than the ``openai`` package, which is only a
dev extra. Works against the Stratum gateway and any other OpenAI-compatible server (vLLM,
llama.cpp server, cloud APIs). Every failure is raised as ``ChatError`` with a one-line message.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from stratum.cli.output import CliError

# Seconds to wait for the TCP connection; a local gateway answers at once, a cloud API in well under this.
_CONNECT_TIMEOUT = 10.0


class ChatError(CliError):
    """A failed chat request. ``status`` is the HTTP status, or None when no response came back."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def fatal(self) -> bool:
        """Whether retrying with another message is pointless (no server, bad key, unknown model)."""
        return self.status is None or self.status in (401, 403, 404)


@dataclass(frozen=True)
class ChatOptions:
    model: str
    temperature: float | None = None
    max_tokens: int | None = None

    def body(self, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "stream": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body


def iter_sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` payload of each Server-Sent Event, per the WHATWG event-stream rules.

    Multi-line ``data:`` fields are joined with newlines, comments (``:``) and other fields
    (``event:``, ``id:``, ``retry:``) are skipped, and an event is dispatched on a blank line.
    """
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:  # a stream that ends without the final blank line
        yield "\n".join(data)


def error_message(payload: Any, *, status: int | None = None, fallback: str = "") -> str:
    """One line from an OpenAI-style ``{"error": {"message", "type", "code"}}`` body."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or fallback or "request failed")
        kind = error.get("code") or error.get("type")
    elif isinstance(error, str):  # some servers send {"error": "text"}
        message, kind = error, None
    elif isinstance(payload, dict) and isinstance(payload.get("detail"), str):  # plain FastAPI
        message, kind = payload["detail"], None
    else:
        message, kind = fallback or "request failed", None
    details = ", ".join(str(part) for part in (kind, f"HTTP {status}" if status else None) if part)
    return f"{message} ({details})" if details else message


class ChatClient:
    """Streams chat completions; use as a context manager so the connection pool is closed."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "text/event-stream"}
        if api_key:
            if not api_key.isascii():  # HTTP headers are ASCII; httpx would fail with an encoding error
                raise ChatError(
                    "the API key contains non-ASCII characters; check --api-key / STRATUM_API_KEY"
                )
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=_CONNECT_TIMEOUT),
            transport=transport,
        )
        self.finish_reason: str | None = None

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def stream(
        self, messages: Sequence[Mapping[str, str]], options: ChatOptions
    ) -> Generator[str, None, None]:
        """Yield the reply's text deltas as they arrive; ``finish_reason`` is set at the end."""
        self.finish_reason = None
        url = f"{self.base_url}/chat/completions"
        try:
            with self._http.stream("POST", "/chat/completions", json=options.body(messages)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ChatError(self._http_error(response), status=response.status_code)
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    # The server ignored stream=true and answered with one JSON completion.
                    response.read()
                    yield from self._whole_reply(response)
                    return
                yield from self._deltas(response)
        except httpx.ConnectError as exc:
            raise ChatError(
                f"the server isn't reachable at {self.base_url}; start it with `stratum serve` "
                "or point --base-url at a running one"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ChatError(f"timed out waiting for {url}") from exc
        except httpx.HTTPError as exc:
            raise ChatError(f"request to {url} failed: {exc or type(exc).__name__}") from exc

    def _deltas(self, response: httpx.Response) -> Iterator[str]:
        for data in iter_sse_data(response.iter_lines()):
            if data.strip() == "[DONE]":
                return
            chunk = self._decode(data)
            if "error" in chunk:  # an error after the stream started: no status code to change
                raise ChatError(error_message(chunk), status=response.status_code)
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield str(delta["content"])
                if choice.get("finish_reason"):
                    self.finish_reason = str(choice["finish_reason"])

    def _whole_reply(self, response: httpx.Response) -> Iterator[str]:
        body = self._decode(response.text)
        for choice in body.get("choices") or []:
            content = (choice.get("message") or {}).get("content")
            if content:
                yield str(content)
            self.finish_reason = choice.get("finish_reason")

    @staticmethod
    def _decode(data: str) -> dict[str, Any]:
        try:
            decoded = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ChatError(f"the server sent something that is not JSON: {data[:80]!r}") from exc
        if not isinstance(decoded, dict):
            raise ChatError(f"the server sent an unexpected payload: {data[:80]!r}")
        return decoded

    @staticmethod
    def _http_error(response: httpx.Response) -> str:
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        fallback = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        return error_message(
            payload, status=response.status_code, fallback=fallback or response.reason_phrase
        )
