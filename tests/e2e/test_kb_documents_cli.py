"""In subprocesses, as a user runs them: ``stratum kb documents`` / ``kb remove`` on a KB the
Python API filled (the two commands never load an encoder, so that test does not either), and
``stratum kb ingest`` of a scanned Chinese PDF through OCR, found again by ``kb search``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.governance.tenancy import TenancyService
from stratum.knowledge.schemas import KbCreate, KbSettings, SearchRequest
from stratum.knowledge.service import KnowledgeService
from stratum.storage import Database
from tests.e2e.conftest import STRATUM
from tests.knowledge.conftest import CORPUS, HashEncoder, require_ocr


def test_list_and_remove_documents(tmp_path: Path) -> None:
    home, folder = tmp_path / "home", tmp_path / "制度"
    folder.mkdir()
    for name in ("tea.md", "library.md", "x1_manual.pdf"):
        shutil.copy(CORPUS / name, folder / name)
    shutil.copy(CORPUS / "annual_leave.md", folder / "年假制度.md")
    env = {**os.environ, "STRATUM_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    url = f"sqlite:///{home / 'stratum.db'}"
    home.mkdir()
    with Database(url) as db:
        db.migrate()
        TenancyService(db).create_org(OrgCreate(name="acme"))
        TenancyService(db).create_project("acme", ProjectCreate(name="bot"))
        service = KnowledgeService(db)
        kb = service.create(KbCreate(name="制度库", settings=KbSettings(chunk_size=96)), project="acme/bot")
        service.ingest(kb, [folder], encoder=HashEncoder())

    def stratum(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STRATUM, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    listed = stratum("kb", "documents", "制度库", "--json")
    assert listed.returncode == 0, listed.stderr
    documents = {d["source"]: d for d in json.loads(listed.stdout)}
    assert set(documents) == {"tea.md", "library.md", "x1_manual.pdf", "年假制度.md"}
    assert documents["x1_manual.pdf"]["pages"] >= 3 and all(d["status"] == "done" for d in documents.values())

    assert documents["x1_manual.pdf"]["chunks_done"] > 1 and documents["年假制度.md"]["chunks_done"] > 1
    removed = stratum("kb", "remove", "制度库", "年假制度.md", "x1_manual.pdf")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [
        f"removed x1_manual.pdf ({documents['x1_manual.pdf']['chunks_done']} chunks)",
        f"removed 年假制度.md ({documents['年假制度.md']['chunks_done']} chunks)",
    ]
    missing = stratum("kb", "remove", "制度库", "tea.md", "年假制度.md")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == "error: knowledge base 制度库 has no document '年假制度.md'"
    table = stratum("kb", "documents", "制度库")
    assert table.returncode == 0 and "tea.md" in table.stdout and "年假制度.md" not in table.stdout

    with Database(url) as db:
        service = KnowledgeService(db)
        kb = service.get(project="acme/bot", name="制度库")
        assert (kb.documents, kb.chunks) == (
            2,
            documents["tea.md"]["chunks_done"] + documents["library.md"]["chunks_done"],
        )
        hits = service.search(kb, SearchRequest(query="年假 天数", k=10, mode="bm25"), encoder=None).hits
        assert {h.source for h in hits} <= {"tea.md", "library.md"}


def test_a_scanned_pdf_is_ingested_and_searched_from_the_cli(tmp_path: Path) -> None:
    require_ocr()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "STRATUM_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    with Database(f"sqlite:///{home / 'stratum.db'}") as db:
        db.migrate()
        TenancyService(db).create_org(OrgCreate(name="acme"))
        TenancyService(db).create_project("acme", ProjectCreate(name="bot"))
        KnowledgeService(db).create(
            KbCreate(name="扫描件", settings=KbSettings(chunk_size=96)), project="acme/bot"
        )
    scan = Path(__file__).parents[1] / "knowledge" / "corpus_ocr" / "档案室扫描件.pdf"

    def stratum(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [STRATUM, *args, "--json"], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    ingested = stratum("kb", "ingest", "扫描件", str(scan))
    assert (ingested["files_done"], ingested["files_failed"], ingested["pages_done"]) == (1, 0, 2), ingested
    found = stratum("kb", "search", "扫描件", "涉密档案能不能复印？", "-k", "1")
    top = found["hits"][0]  # type: ignore[index]
    assert (top["source"], top["page"]) == ("档案室扫描件.pdf", 2) and "涉密档案" in top["text"]
