"""``kb_ingest`` job bodies for worker tests: the real job with the hash encoder, slowed down so
a test can cancel or kill it mid-way (each encode call sleeps ``STRATUM_TEST_ENCODE_SLEEP``)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from stratum.jobs.context import JobContext
from stratum.knowledge.ingest_job import execute
from stratum.settings import Settings
from stratum.storage import Database
from tests.knowledge.conftest import HashEncoder


class SlowHashEncoder(HashEncoder):
    def encode(self, texts: list[str], *, kind: str = "passage") -> np.ndarray:
        time.sleep(float(os.environ.get("STRATUM_TEST_ENCODE_SLEEP", "0")))
        return super().encode(texts, kind=kind)


def run(context: JobContext) -> dict[str, Any]:
    settings = Settings()
    with Database(settings.resolved_database_url) as db:
        return execute(context, db, settings, encoder=SlowHashEncoder())
