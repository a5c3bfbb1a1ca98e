"""Token choice and stop-string scanning (Chinese included)."""

from __future__ import annotations

import torch

from stratum.engine.base import SamplingParams
from stratum.engine.sampling import StopScanner, make_generator, pick_token


def test_greedy_picks_the_argmax() -> None:
    logits = torch.tensor([0.1, 3.0, 2.9])
    assert pick_token(logits, SamplingParams(temperature=0), make_generator(None)) == 1


def test_seeded_sampling_is_reproducible() -> None:
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=1.0)
    a = [pick_token(logits, params, g) for g in [make_generator(5)] for _ in range(20)]
    b = [pick_token(logits, params, g) for g in [make_generator(5)] for _ in range(20)]
    assert a == b


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    params = SamplingParams(temperature=1.0, top_p=0.7)
    generator = make_generator(1)
    picks = {pick_token(logits, params, generator) for _ in range(300)}
    assert picks == {0, 1}


def test_stop_scanner_finds_and_holds_back_partial_stops() -> None:
    scanner = StopScanner(("。结束", "END"))
    assert scanner.find("你好。结束了", 0) == 2
    assert scanner.find("abc", 0) is None
    # "。" could start "。结束": hold it back until we know.
    assert scanner.safe_end("你好。") == 2
    assert scanner.safe_end("你好。结") == 2
    assert scanner.safe_end("你好，") == 3
    assert scanner.safe_end("xxEN") == 2


def test_incomplete_characters_are_held_back() -> None:
    assert StopScanner(()).safe_end("你好\ufffd") == 2
