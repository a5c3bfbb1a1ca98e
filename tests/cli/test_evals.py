"""``stratum eval``: the release gate in a subprocess, the way a release script runs it; the other
commands in-process (``invoke_stratum``; tests/e2e/test_eval_cli_live.py runs them as subprocesses)."""

import json
from datetime import timedelta
from pathlib import Path

import pytest

from stratum.evals.tables import EvalScheduleRow
from stratum.settings import Settings
from stratum.storage import Database, utcnow
from tests.cli.conftest import FakeOpenAI, RunStratum
from tests.tiny import build_tiny_llama


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def upstream_bot(invoke_stratum: RunStratum, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FAKE_KEY", fake_openai.api_key)
    added = invoke_stratum(
        "models",
        "add",
        "bot",
        "--upstream",
        fake_openai.url,
        "--upstream-model",
        "fake",
        "--api-key-env",
        "FAKE_KEY",
    )
    assert added.returncode == 0, added.stderr
    return "bot"


@pytest.mark.slow
def test_run_scores_a_suite_and_stores_it_under_the_version(
    invoke_stratum: RunStratum, upstream_bot: str, tmp_path: Path
) -> None:
    # The fake upstream always answers 你好，我是测试模型。
    suite = write_jsonl(
        tmp_path / "greet.jsonl",
        [
            {"id": "hello", "prompt": "你好", "answer": "你好，我是测试模型。"},
            {"id": "other", "prompt": "天气？", "answer": "今天晴天"},
        ],
    )
    done = invoke_stratum(
        "eval", "run", "bot", "--suite", str(suite), "--metrics", "exact_match,chrf", "--json"
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["model_ref"] == "bot@1" and run["items"] == 2
    assert run["metrics"]["exact_match"] == 0.5
    listed = json.loads(invoke_stratum("eval", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [run["id"]]


@pytest.mark.slow
def test_gate_passes_an_equal_candidate_and_fails_with_too_few_items(
    run_stratum: RunStratum, upstream_bot: str, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    again = run_stratum(
        "models",
        "add",
        "bot",
        "--upstream",
        fake_openai.url,
        "--upstream-model",
        "fake",
        "--api-key-env",
        "FAKE_KEY",
    )
    assert again.returncode == 0, again.stderr
    suite = write_jsonl(
        tmp_path / "s.jsonl",
        [{"id": str(i), "prompt": f"问{i}", "answer": "你好，我是测试模型。"} for i in range(5)],
    )
    ok = run_stratum(
        "eval", "gate", "bot@2", "--baseline", "bot@1", "--suite", str(suite), "--min-items", "5", "--json"
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["passed"] is True
    # Both runs are reused now: only the gate rule changes.
    short = run_stratum("eval", "gate", "bot@2", "--baseline", "bot@1", "--suite", str(suite))
    assert short.returncode == 1
    assert "FAILED" in short.stdout and "too few items (5 < 30)" in short.stdout
    assert len(json.loads(run_stratum("eval", "list", "--json").stdout)) == 2


@pytest.mark.slow
def test_perplexity_of_a_local_model(invoke_stratum: RunStratum, tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "tiny", seed=3)
    assert invoke_stratum("models", "add", "tiny", "--path", str(model)).returncode == 0
    texts = write_jsonl(
        tmp_path / "texts.jsonl", [{"text": "Stratum 是一个企业大模型平台。"}, {"text": "hello world"}]
    )
    done = invoke_stratum("eval", "run", "tiny", "--suite", str(texts), "--json")
    assert done.returncode == 0, done.stderr
    nll = json.loads(done.stdout)["metrics"]["nll"]
    # A random 384-token model: NLL near ln(384) ≈ 5.95.
    assert 5.0 < nll < 7.0


def test_bad_suite_is_one_line_error(run_stratum: RunStratum, upstream_bot: str, tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "没有答案"}])
    done = run_stratum("eval", "run", "bot", "--suite", str(bad))
    assert done.returncode != 0
    assert "line 1: field 'reference'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_run_and_gate_on_a_dataset_split_reuse_runs_and_record_lineage(
    invoke_stratum: RunStratum, upstream_bot: str, tmp_path: Path
) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"问题{i}"},
                {"role": "assistant", "content": "你好，我是测试模型。" if i % 2 else f"答案{i}"},
            ]
        }
        for i in range(10)
    ]
    source = write_jsonl(tmp_path / "客服.jsonl", rows)
    assert invoke_stratum("data", "import", str(source)).returncode == 0
    split = invoke_stratum(
        "data",
        "transform",
        "客服",
        "--steps",
        "split",
        "--params",
        "split.test=0.5",
        "--params",
        "split.train=0.5",
        "--params",
        "split.validation=0",
    )
    assert split.returncode == 0, split.stderr
    no_split = invoke_stratum("eval", "run", "bot", "--dataset", "客服@1")
    assert (
        no_split.returncode == 1 and "has no splits" in no_split.stderr and "Traceback" not in no_split.stderr
    )
    done = invoke_stratum("eval", "run", "bot", "--dataset", "客服@2", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["suite"] == "客服@2:test" and run["items"] == 5
    lineage = invoke_stratum("lineage", f"eval:{run['id']}", "--json")
    assert lineage.returncode == 0, lineage.stderr
    relations = {(e["source_id"], e["relation"]) for e in json.loads(lineage.stdout)["upstream"]}
    assert {("bot@1", "evaluated"), ("客服@2", "evaluated_on")} <= relations
    gated = invoke_stratum(
        "eval", "gate", "bot@1", "--baseline", "bot@1", "--dataset", "客服@2", "--min-items", "5", "--json"
    )
    assert gated.returncode == 0, gated.stderr
    # The stored run was reused: still one run.
    assert len(json.loads(invoke_stratum("eval", "list", "--json").stdout)) == 1
    both = invoke_stratum("eval", "run", "bot", "--dataset", "客服@2", "--suite", str(source))
    assert both.returncode == 1 and "exactly one of" in both.stderr


@pytest.mark.slow
def test_judge_runs_both_models_and_stores_position_swapped_scores(
    invoke_stratum: RunStratum, upstream_bot: str, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # Every model here is the fake upstream, which always answers "A": a judge that always picks
    # the first answer is pure position bias, so the swapped asks disagree and every item ties.
    fake_openai.deltas = ("A",)
    suite = write_jsonl(
        tmp_path / "s.jsonl", [{"id": str(i), "prompt": f"问{i}", "answer": "好"} for i in range(3)]
    )
    judged = invoke_stratum(
        "eval", "judge", "bot", "--baseline", "bot@1", "--judge", "bot", "--suite", str(suite), "--json"
    )
    assert judged.returncode == 0, judged.stderr
    run = json.loads(judged.stdout)
    assert run["metrics"]["judge"] == 0.5 and run["metrics"]["win"] == 0.0
    assert run["suite"] == f"judge[bot@1 by bot@1]:{suite.stem}"
    # 3 items x (candidate + baseline + 2 judge asks).
    assert len(fake_openai.requests) == 12
    judge_prompts = [
        r["messages"][0]["content"] for r in fake_openai.requests if "回答 A" in r["messages"][0]["content"]
    ]
    assert len(judge_prompts) == 6 and all("问" in p for p in judge_prompts)
    again = invoke_stratum("eval", "compare", str(run["id"]), str(run["id"]), "--metric", "judge", "--json")
    assert again.returncode == 0, again.stderr
    missing = invoke_stratum(
        "eval", "judge", "bot", "--baseline", "bot@1", "--judge", "无此模型", "--suite", str(suite)
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_schedule_add_run_due_flags_a_drop_and_lists_it(
    invoke_stratum: RunStratum, upstream_bot: str, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    assert invoke_stratum("models", "alias", "bot", "prod", "1").returncode == 0
    suite = write_jsonl(
        tmp_path / "客服.jsonl",
        [{"id": str(i), "prompt": f"问{i}", "answer": "你好，我是测试模型。"} for i in range(4)],
    )
    bad = invoke_stratum("eval", "schedule", "add", "bot@1", "--suite", str(suite))
    assert bad.returncode == 1 and "NAME:ALIAS" in bad.stderr and "Traceback" not in bad.stderr
    made = invoke_stratum(
        "eval",
        "schedule",
        "add",
        "bot:prod",
        "--suite",
        str(suite),
        "--every",
        "90s",
        "--metric",
        "exact_match",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    first = invoke_stratum("eval", "schedule", "run-due", "--json")
    assert first.returncode == 0, first.stderr
    [outcome] = json.loads(first.stdout)
    assert outcome["current"] == 1.0 and outcome["previous"] is None
    assert (
        json.loads(invoke_stratum("eval", "schedule", "run-due", "--json").stdout) == []
    )  # not due again yet
    # The production model now answers worse; rather than wait 90 s, make the schedule due now.
    fake_openai.deltas = ("不知道",)
    db = Database(Settings().resolved_database_url)
    with db.session() as session:
        session.get(EvalScheduleRow, json.loads(made.stdout)["id"]).next_due_at = utcnow() - timedelta(
            seconds=1
        )
    db.dispose()
    second = invoke_stratum("eval", "schedule", "run-due")
    assert second.returncode == 1 and "FLAGGED" in second.stdout
    listed = invoke_stratum("eval", "schedule", "list", "--json")
    [schedule] = json.loads(listed.stdout)
    assert schedule["flagged"] is True and "100.0%" in schedule["flag_reason"]
    assert schedule["backflow_dataset"] is None  # no feedback yet
    audit = invoke_stratum("audit", "list", "--json")
    assert "eval.schedule.flag" in audit.stdout
