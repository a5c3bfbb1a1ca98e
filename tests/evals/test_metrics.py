import pytest

from stratum.evals import metrics


def test_normalize_folds_full_width_case_and_punctuation() -> None:
    assert metrics.normalize("  ＡＢＣ，你好！ The Answer. ") == "abc 你好 answer"


def test_chinese_is_scored_per_character() -> None:
    assert metrics.tokens("北京是中国的首都") == ["北", "京", "是", "中", "国", "的", "首", "都"]
    assert metrics.tokens("GPU 显存 24GB") == ["gpu", "显", "存", "24gb"]


def test_exact_match_ignores_formatting_but_not_content() -> None:
    assert metrics.exact_match("北京。", ["北京"]) == 1.0
    assert metrics.exact_match("南京", ["北京"]) == 0.0
    assert metrics.exact_match("Paris", ["London", "paris"]) == 1.0


def test_f1_partial_overlap_in_chinese() -> None:
    # prediction 北京市 (3 chars) vs reference 北京 (2): 2 common → P 2/3, R 1 → F1 0.8
    assert metrics.f1("北京市", ["北京"]) == pytest.approx(0.8)
    assert metrics.f1("上海", ["北京"]) == 0.0
    assert metrics.f1("", [""]) == 1.0


def test_rouge_l_uses_the_longest_common_subsequence() -> None:
    # LCS of 我爱北京天安门 / 我在北京 = 我 北 京 (3): P 3/7, R 3/4
    p, r = 3 / 7, 3 / 4
    assert metrics.rouge_l("我爱北京天安门", ["我在北京"]) == pytest.approx(2 * p * r / (p + r))
    assert metrics.rouge_l("the cat sat", ["the cat sat"]) == 1.0


def test_bleu_and_chrf_are_character_level_for_chinese() -> None:
    same = metrics.bleu("今天天气很好", ["今天天气很好"])
    close = metrics.bleu("今天天气不错", ["今天天气很好"])
    far = metrics.bleu("我喜欢猫", ["今天天气很好"])
    assert same == pytest.approx(1.0)
    assert same > close > far
    assert metrics.chrf("今天天气很好", ["今天天气很好"]) == pytest.approx(1.0)
    assert 0 < metrics.chrf("今天天气不错", ["今天天气很好"]) < 1


def test_contains_is_answer_string_recall() -> None:
    assert metrics.contains("答案是：北京，中国的首都", ["北京"]) == 1.0
    assert metrics.contains("答案是上海", ["北京"]) == 0.0


def test_best_reference_wins() -> None:
    assert metrics.f1("北京", ["上海", "北京"]) == 1.0
