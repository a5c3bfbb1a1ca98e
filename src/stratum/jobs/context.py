"""What a job's ``run(context)`` gets inside its child process, and the files it talks through.

The child never writes the jobs table: it reports through small files in its run directory
(``progress.json``, ``result.json``, ``error.txt``) that its worker reads and stores, fenced on its
attempt. So a job needs no database access of its own (though training jobs open the store to
register their outputs), and a killed child leaves nothing half-written in the queue.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stratum.jobs.schemas import Resources

SPEC_FILE = "spec.json"
PROGRESS_FILE = "progress.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically: a reader sees the old or the new document, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass
class JobContext:
    """Serves job handlers: config, a persistent work directory, progress and metrics reporting."""

    job_id: str
    kind: str
    attempt: int
    config: dict[str, Any]
    resources: Resources
    # Kept across attempts (checkpoints live here, so a retried job resumes).
    workdir: Path
    # This attempt's files for the worker (progress, result, error).
    rundir: Path
    # ORG/PROJECT the job belongs to (None: a platform job); scopes the names it may use.
    project: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)
    _first_step: int | None = None

    def log(self, message: str) -> None:
        """One timestamped line in the job's log."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{stamp} {message}", flush=True)

    def progress(
        self,
        step: int,
        total: int | None = None,
        *,
        loss: float | None = None,
        message: str | None = None,
        **extra: Any,
    ) -> None:
        """Report progress; the ETA comes from this attempt's pace (resumed steps are not counted)."""
        now = time.monotonic()
        if self._first_step is None:
            self._first_step, self._started = step, now
        eta = None
        done = step - self._first_step
        if total is not None and done > 0:
            eta = round((now - self._started) / done * max(total - step, 0), 1)
        report = {"step": step, "total": total, "loss": loss, "eta_s": eta, "message": message, **extra}
        write_json(self.rundir / PROGRESS_FILE, {k: v for k, v in report.items() if v is not None})

    @classmethod
    def from_spec(cls, spec_path: Path) -> JobContext:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        return cls(
            job_id=spec["id"],
            kind=spec["kind"],
            attempt=spec["attempt"],
            config=spec["config"],
            resources=Resources(**spec["resources"]),
            workdir=Path(spec["workdir"]),
            rundir=spec_path.parent,
            project=spec.get("project"),
        )


def eprint(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
