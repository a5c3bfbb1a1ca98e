"""Server-sent events in OpenAI's framing: ``data: {json}\\n\\n`` … ``data: [DONE]\\n\\n``."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from stratum.errors import StratumError

DONE = b"data: [DONE]\n\n"


def event(payload: BaseModel | dict[str, Any]) -> bytes:
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def error_event(error: StratumError) -> bytes:
    """An error after the 200 header: clients (the openai SDK included) raise on it."""
    return event(error.to_dict())
