"""Structured logging: JSON lines when not on a TTY (or when asked), readable text on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is logged as a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(*, level: str, json_logs: bool | None, logs_dir: Path) -> None:
    use_json = (not sys.stderr.isatty()) if json_logs is None else json_logs
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        JsonFormatter() if use_json else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    logs_dir.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(logs_dir / "stratum.log", encoding="utf-8")
    file.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [console, file]
    root.setLevel(level.upper())
    # Chatty libraries: their progress and HTTP lines would drown ours.
    for name in ("httpx", "httpcore", "uvicorn.access", "transformers", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
