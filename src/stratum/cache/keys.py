"""Cache keys: which requests may be cached, and what makes two of them "the same request".

Only deterministic requests are cached: ``temperature == 0`` (greedy) or a fixed ``seed``. The key
is sha256 over canonical JSON of: the tenant scope, the model *version* that serves the name (so an
alias moving to another version misses), the messages (text NFC-normalised, surrounding whitespace
stripped, roles kept) and every parameter that changes the output (sampling, max_tokens, stop, n,
tools, response format).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

# Request fields that change the answer (beyond messages). Everything else (user, stream,
# stream_options, metadata) does not, and must not split the cache.
OUTPUT_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "tools",
    "tool_choice",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)


def is_deterministic(*, temperature: float | None, seed: int | None) -> bool:
    # An unset temperature means 1.0 (sampling): only cacheable with a seed.
    return temperature == 0 or seed is not None


def _text(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    if isinstance(value, list):
        return [_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _text(v) for k, v in sorted(value.items())}
    return value


def normalise_request(
    messages: Sequence[Mapping[str, Any]] | None, params: Mapping[str, Any], *, prompt: str | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {k: params[k] for k in OUTPUT_FIELDS if params.get(k) is not None}
    if isinstance(document.get("stop"), str):
        document["stop"] = [document["stop"]]
    if messages is not None:
        document["messages"] = [_text(dict(m)) for m in messages]
    if prompt is not None:
        document["prompt"] = _text(prompt)
    return document


def cache_key(*, scope: str, version: str, request: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"scope": scope, "version": version, "request": request},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
