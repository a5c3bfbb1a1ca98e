"""`stratum data from-feedback` in-process: a version with counts, --prompts for old feedback,
--since parsing, and a one-line error when nothing usable exists."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from stratum.cli.main import app
from stratum.registry.feedback import FeedbackService
from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.settings import Settings
from stratum.storage import Database


def _feedback() -> None:
    db = Database(Settings().resolved_database_url)
    db.migrate()
    try:
        log = ResponseLog(db)
        for response_id, prompt in (("r-1", [{"role": "user", "content": "怎么退款？"}]), ("r-2", None)):
            log.remember(
                ServedResponse(
                    request_id=f"q-{response_id}",
                    model="bot",
                    version_ref="bot@1",
                    status=200,
                    latency_ms=1.0,
                    response_id=response_id,
                    prompt=prompt,
                )
            )
        service = FeedbackService(db, log)
        service.submit(response_id="r-1", thumbs="down", correction="请在订单页申请。", feedback_id="fb-1")
        service.submit(response_id="r-2", thumbs="down", correction="旧答案的更正。", feedback_id="fb-2")
    finally:
        db.dispose()


def test_from_feedback_builds_a_version_and_counts_the_rest(runner: CliRunner, tmp_path: Path) -> None:
    empty = runner.invoke(app, ["data", "from-feedback", "--name", "反馈"])
    assert empty.exit_code == 1 and empty.output.startswith("error: no dataset row could be built")
    _feedback()
    made = runner.invoke(
        app, ["data", "from-feedback", "--name", "反馈", "--model", "bot", "--since", "1d", "--json"]
    )
    assert made.exit_code == 0, made.output
    result = json.loads(made.output)
    assert (
        result["corrections"] == 1 and result["missing_prompt"] == 1 and result["version"]["ref"] == "反馈@1"
    )
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"response_id": "r-2", "prompt": "旧问题？"}, ensure_ascii=False), encoding="utf-8"
    )
    table = runner.invoke(app, ["data", "from-feedback", "--name", "反馈", "--prompts", str(prompts)])
    assert table.exit_code == 0, table.output
    assert "反馈@2" in table.output and "2 correction(s)" in table.output
    bad = runner.invoke(app, ["data", "from-feedback", "--since", "上周"])
    assert bad.exit_code == 2 and "--since takes 7d" in bad.output
