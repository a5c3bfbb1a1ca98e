"""The ``eval`` job kind, run the way a worker's child runs it (``run(context)``)."""

import json
from pathlib import Path

import pytest

from stratum.errors import InvalidRequest
from stratum.evals import job
from stratum.evals.service import EvalService
from stratum.jobs.context import PROGRESS_FILE, JobContext
from stratum.jobs.kinds import BUILTIN_KINDS, validate
from stratum.jobs.schemas import Resources
from stratum.registry.lineage import LineageService
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database
from tests.cli.conftest import FakeOpenAI, fake_openai  # noqa: F401  (fixture)


def test_config_is_validated_at_submit() -> None:
    assert "eval" in BUILTIN_KINDS
    ok = validate(BUILTIN_KINDS, "eval", {"model": "bot", "dataset": "客服@2"})
    assert ok["split"] == "test" and ok["max_tokens"] == 128
    with pytest.raises(InvalidRequest, match="exactly one of 'suite' or 'dataset'"):
        validate(BUILTIN_KINDS, "eval", {"model": "bot"})
    with pytest.raises(InvalidRequest, match="invalid eval config"):
        validate(BUILTIN_KINDS, "eval", {"model": "bot", "suite": "s.jsonl", "nope": 1})


def test_run_scores_the_version_reports_progress_and_stores_the_run(
    fake_openai: FakeOpenAI,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_KEY", fake_openai.api_key)
    db = Database(Settings().resolved_database_url)
    db.migrate()
    try:
        registry = RegistryService(db)
        registry.add_model(
            name="bot",
            source="upstream",
            upstream_url=fake_openai.url,
            upstream_model="fake",
            api_key_env="FAKE_KEY",
        )
        registry.set_alias(name="bot", alias="prod", version=1)
        suite = tmp_path / "问答.jsonl"
        suite.write_text(
            "\n".join(
                json.dumps(
                    {"id": f"q{i}", "prompt": f"问{i}", "answer": "你好，我是测试模型。" if i < 3 else "不"}
                )
                for i in range(4)
            ),
            encoding="utf-8",
        )
        rundir = tmp_path / "run"
        rundir.mkdir()
        context = JobContext(
            job_id="job-1",
            kind="eval",
            attempt=1,
            config={"model": "bot:prod", "suite": str(suite), "metrics": ["exact_match"]},
            resources=Resources(),
            workdir=tmp_path,
            rundir=rundir,
        )
        result = job.run(context)
        assert result["model_ref"] == "bot@1" and result["items"] == 4
        assert result["metrics"] == {"exact_match": 0.75} and context.metrics["exact_match"] == 0.75
        progress = json.loads((rundir / PROGRESS_FILE).read_text(encoding="utf-8"))
        assert progress["step"] == 4 and progress["total"] == 4
        stored = EvalService(db).get_run(result["run"])
        assert stored.actor == "job:job-1" and stored.suite == "问答"
        edges = LineageService(db).upstream(("eval", str(stored.id)))
        assert [(e.source, e.relation) for e in edges] == [(("model", "bot@1"), "evaluated")]
    finally:
        db.dispose()
