"""End-to-end, as a user meets API ingestion: a running ``stratum serve`` (its in-process worker
runs the ``kb_ingest`` job in a child process with the bundled e5), Chinese Markdown and a Chinese
PDF uploaded through ``POST /admin/v1/kb/{kb}/files``, a page ingested from a URL, progress
followed through the KB API and ``stratum jobs show``, then questions through the ``openai`` SDK
with ``model: "kb/<name>"`` answered with citations."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import KbPlatform
from tests.knowledge.conftest import CORPUS
from tests.knowledge.pages import serving

pytestmark = pytest.mark.slow


def _wait(api: httpx.Client, url: str, timeout: float = 400) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen_running = False
    while True:
        progress = api.get(url).json()
        seen_running |= progress["state"] == "running"
        if progress["state"] in ("done", "failed", "cancelled"):
            progress["seen_running"] = seen_running
            return progress  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, progress
        time.sleep(0.2)


def test_upload_and_url_ingest_as_jobs_then_answers_with_citations(kb_platform: KbPlatform) -> None:
    server = kb_platform.server
    server.cli(
        "kb", "create", "上传", "--project", "acme/bot", "--chunk-size", "128", "--chunk-overlap", "16"
    )

    with (
        serving() as site,
        httpx.Client(
            base_url=f"http://127.0.0.1:{server.port}",
            headers={"authorization": f"Bearer {kb_platform.key}"},
            timeout=60,
        ) as api,
    ):
        files = [
            ("files", (name, (CORPUS / name).read_bytes(), "application/octet-stream"))
            for name in ("x1_manual.pdf", "annual_leave.md", "tea.md")
        ]
        sent = api.post("/admin/v1/kb/上传/files", files=files)
        assert sent.status_code == 202, sent.text
        job_id = sent.json()["job_id"]
        # The gateway keeps serving while the job ingests.
        assert api.get("/admin/v1/kb/上传").status_code == 200
        final = _wait(api, "/admin/v1/kb/上传/ingest")
        assert final["state"] == "done" and final["files_done"] == 3 and final["files_failed"] == 0, (
            final,
            server.cli("jobs", "logs", job_id).stdout[-3000:],
        )
        assert final["job_id"] == job_id and final["chunks_done"] >= 3 and final["pages_done"] >= 3
        shown = json.loads(server.cli("jobs", "show", job_id, "--json").stdout)
        assert shown["kind"] == "kb_ingest" and shown["status"] == "succeeded"
        assert shown["progress"]["files_done"] == 3 and shown["progress"]["total"] == 3
        text = server.cli("jobs", "show", job_id).stdout
        assert f"3/3 files, {final['chunks_done']} chunks" in text and "kb_ingest" in text

        url = f"{site}/news/library.html"
        sent = api.post("/admin/v1/kb/上传/ingest", json={"urls": [url]})
        assert sent.status_code == 202, sent.text
        assert _wait(api, "/admin/v1/kb/上传/ingest")["state"] == "done"
        sources = {d["source"] for d in api.get("/admin/v1/kb/上传/documents").json()}
        assert sources == {"x1_manual.pdf", "annual_leave.md", "tea.md", url}

        client = OpenAI(base_url=server.base_url, api_key=kb_platform.key)
        reply = client.chat.completions.create(
            model="kb/上传", messages=[{"role": "user", "content": "新买的 X1 智能音箱保修多长时间？"}]
        )
        citations = (reply.model_extra or {})["citations"]
        assert citations[0]["source"] == "x1_manual.pdf" and citations[0]["page"] == 3
        assert citations[0]["chunk_id"] and "两年" in (reply.choices[0].message.content or "")
        reply = client.chat.completions.create(
            model="kb/上传", messages=[{"role": "user", "content": "图书馆周末开放到晚上几点？"}]
        )
        citations = (reply.model_extra or {})["citations"]
        assert citations[0]["source"] == url and "九点" in (reply.choices[0].message.content or "")
