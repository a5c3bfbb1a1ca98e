"""`stratum lineage MODEL@V`: the graph of a registered adapter, printed as trees and as JSON."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from stratum.cli.main import app
from stratum.registry import repo
from stratum.registry.lineage import LineageService
from stratum.registry.service import RegistryService
from stratum.settings import Settings
from stratum.storage import Database


def _adapter_with_history() -> None:
    with Database(Settings().resolved_database_url) as db:
        db.migrate()
        base = RegistryService(db).add_model(
            name="qwen-base", source="upstream", upstream_url="http://127.0.0.1:9/v1"
        )
        with db.session() as session:
            model = repo.create_model(session, name="kefu-lora", kind="chat", description=None)
            repo.add_version(
                session,
                model=model,
                created_by="jobs",
                source="local",
                variant="adapter",
                base_version_id=base.id,
            )
        lineage = LineageService(db)
        lineage.add_edge(source=("dataset", "客服问答@3"), target=("job", "ft-1"), relation="trained_on")
        lineage.add_edge(source=("job", "ft-1"), target=("model", "kefu-lora@1"), relation="produced")
        lineage.add_edge(source=("model", "kefu-lora@1"), target=("eval", "ev-1"), relation="evaluated")
        lineage.add_edge(source=("model", "kefu-lora@1"), target=("deployment", "客服"), relation="deployed")
        for i in range(12):
            lineage.add_edge(
                source=("deployment", "客服"), target=("feedback", f"fb-{i}"), relation="feedback"
            )


def test_lineage_tree_and_json(runner: CliRunner) -> None:
    _adapter_with_history()
    result = runner.invoke(app, ["lineage", "kefu-lora@1"])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in (
        "produced by",
        "job ft-1",
        "dataset 客服问答@3",
        "model qwen-base@1  (base_of)",
        "eval ev-1",
        "deployment 客服",
        "feedback fb-0",
        "… 2 more",
    ):
        assert expected in out, out
    # Upstream lists the job before its dataset (the dataset hangs under the job).
    assert out.index("job ft-1") < out.index("dataset 客服问答@3") < out.index("eval ev-1")
    graph = json.loads(runner.invoke(app, ["lineage", "kefu-lora@1", "--json"]).stdout)
    assert {(e["source_id"], e["relation"]) for e in graph["upstream"]} == {
        ("ft-1", "produced"),
        ("客服问答@3", "trained_on"),
        ("qwen-base@1", "base_of"),
    }
    assert len(graph["downstream"]) == 2 + 12
    shallow = json.loads(runner.invoke(app, ["lineage", "kefu-lora@1", "--json", "--depth", "1"]).stdout)
    assert len(shallow["downstream"]) == 2
    from_dataset = json.loads(runner.invoke(app, ["lineage", "dataset:客服问答@3", "--json"]).stdout)
    assert [e["target_id"] for e in from_dataset["downstream"]][:2] == ["ft-1", "kefu-lora@1"]


def test_unknown_version_is_one_error_line(runner: CliRunner) -> None:
    _adapter_with_history()
    result = runner.invoke(app, ["lineage", "kefu-lora@7"])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "versions 1" in result.output
    bad = runner.invoke(app, ["lineage", "no-version"])
    assert bad.exit_code == 1 and "name@version" in bad.output


def test_feedback_list(runner: CliRunner) -> None:
    from stratum.registry.feedback import FeedbackService
    from stratum.registry.responses import ResponseLog, ServedResponse

    with Database(Settings().resolved_database_url) as db:
        db.migrate()
        log = ResponseLog(db)
        service = FeedbackService(db, log)
        for i, score in enumerate((1.0, 0.2)):
            log.remember(
                ServedResponse(
                    request_id=f"q{i}",
                    model="bot",
                    version_ref="bot@2",
                    status=200,
                    latency_ms=5,
                    response_id=f"r{i}",
                )
            )
            service.submit(
                response_id=f"r{i}",
                score=score,
                is_admin=True,
                feedback_id=f"fb-{i}",
                correction="正确答案是七天。" if score < 0.5 else None,
            )
    low = json.loads(runner.invoke(app, ["feedback", "list", "--max-score", "0.5", "--json"]).stdout)
    assert [(f["id"], f["correction"]) for f in low] == [("fb-1", "正确答案是七天。")]
    table = runner.invoke(app, ["feedback", "list", "--model", "bot@2"])
    assert table.exit_code == 0 and "fb-0" in table.output and "正确答案是七天" in table.output
    bad = runner.invoke(app, ["feedback", "list", "--since", "yesterday"])
    assert bad.exit_code == 2 and "error:" in bad.output
