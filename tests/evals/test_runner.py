from stratum.engine.fake import FakeEngine
from stratum.evals.judge import judge_pairs, parse_verdict
from stratum.evals.runner import parse_choice, run_suite
from stratum.evals.suites import parse_suite


async def test_generation_scores_each_item_with_each_metric() -> None:
    suite = parse_suite(
        [
            (1, {"id": "capital", "prompt": "中国的首都？", "answer": "北京"}),
            (2, {"id": "fruit", "prompt": "一种水果？", "answer": "苹果"}),
        ],
        name="qa",
    )
    engine = FakeEngine(["北京", "香蕉"])
    result = await run_suite(engine, suite, metrics=["exact_match", "f1"], concurrency=1)
    by_id = {item.item_id: item for item in result.items}
    assert by_id["capital"].scores == {"exact_match": 1.0, "f1": 1.0}
    assert by_id["fruit"].scores == {"exact_match": 0.0, "f1": 0.0}
    assert result.means() == {"exact_match": 0.5, "f1": 0.5}
    # Greedy decoding, so a run is reproducible.
    assert all(r.params.temperature == 0.0 for r in engine.requests)


async def test_multiple_choice_accuracy() -> None:
    suite = parse_suite(
        [
            (1, {"question": "哪个是水果？", "choices": ["白菜", "苹果"], "answer": "B"}),
            (2, {"question": "哪个是动物？", "choices": ["猫", "石头"], "answer": "A"}),
        ],
        name="mc",
    )
    result = await run_suite(FakeEngine(["答案：B", "B"]), suite, concurrency=1)
    assert [i.scores["accuracy"] for i in result.items] == [1.0, 0.0]


def test_parse_choice() -> None:
    assert parse_choice("B", 4) == 1
    assert parse_choice("答案是 (C)", 4) == 2
    assert parse_choice("b", 2) == 1
    assert parse_choice("Because A is right", 4) == 0
    assert parse_choice("无法回答", 4) is None
    assert parse_choice("E", 4) is None


async def test_unknown_metric_is_a_clear_error() -> None:
    suite = parse_suite([(1, {"prompt": "a", "answer": "b"})], name="s")
    try:
        await run_suite(FakeEngine(), suite, metrics=["bertscore"])
    except Exception as error:
        assert "unknown metric" in str(error)
    else:
        raise AssertionError("expected an error")


def test_parse_verdict() -> None:
    assert parse_verdict("A") == "A"
    assert parse_verdict("b") == "B"
    assert parse_verdict("T") == "T"
    assert parse_verdict("都不错") is None


async def test_judge_is_position_swapped() -> None:
    # Order of asks per item: (candidate first) then (candidate second).
    # item 1: judge says A then B → candidate won both orders → 1.0
    # item 2: judge always says A (pure position bias) → inconsistent → 0.5
    # item 3: judge says B then A → candidate lost both → 0.0
    judge = FakeEngine(["A", "B", "A", "A", "B", "A"])
    pairs = await judge_pairs(
        judge,
        item_ids=["1", "2", "3"],
        questions=["问1", "问2", "问3"],
        candidate=["好", "中", "差"],
        baseline=["差", "中", "好"],
        concurrency=1,
    )
    assert [p.score for p in pairs] == [1.0, 0.5, 0.0]
    assert pairs[1].verdicts == ("A", "A")


async def test_judge_suite_scores_the_candidate_per_item() -> None:
    from stratum.evals.judge import judge_suite
    from stratum.evals.runner import ItemResult, RunResult

    suite = parse_suite(
        [
            (1, {"id": "a", "prompt": "北京是哪国首都？", "answer": "中国"}),
            (2, {"id": "b", "prompt": "你好", "answer": "你好"}),
        ],
        name="qa",
    )
    cand = RunResult(items=[ItemResult("a", "中国", {}), ItemResult("b", "嗯", {})])
    base = RunResult(items=[ItemResult("a", "日本", {}), ItemResult("b", "你好！", {})])
    judge = FakeEngine(["A", "B", "我不确定", "A"])
    result = await judge_suite(judge, suite, candidate=cand, baseline=base, concurrency=1)
    assert [(i.item_id, i.scores["judge"]) for i in result.items] == [("a", 1.0), ("b", 0.5)]
    assert result.items[1].error is not None and result.items[0].error is None
    assert result.means()["judge"] == 0.75 and result.means()["win"] == 0.5
    # The judge saw the question and both answers, the candidate second in the swapped ask.
    assert "北京是哪国首都？" in judge.requests[0].messages[0]["content"]
    assert judge.requests[1].messages[0]["content"].index("日本") < judge.requests[1].messages[0][
        "content"
    ].index("中国")
    missing = RunResult(items=[ItemResult("a", "中国", {})])
    try:
        await judge_suite(judge, suite, candidate=missing, baseline=base)
    except Exception as error:
        assert "missing: b" in str(error)
    else:
        raise AssertionError("a run missing items must be refused")
