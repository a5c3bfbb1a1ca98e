"""Content-guard quality and speed: precision/recall/F1 per PII type on the labelled set, and
throughput of each detector, with a baseline from the same run.

    PYTHONPATH=src python benchmarks/guard_bench.py [--cases FILE] [--repeat N]

Quality is deterministic. Throughput is in characters per second over the labelled texts (mostly
short sentences) and over one long mixed document, on whatever the machine has free: the baseline
row (one ``\\d+`` regex pass over the same text) shows how loaded it was.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from pathlib import Path

from stratum.governance.guard.evaluation import INJECTION, evaluate, load_cases
from stratum.governance.guard.injection import injection_score
from stratum.governance.guard.pii import PII_TYPES, find_pii, mask_pii
from stratum.governance.guard.policy import GuardPolicy
from stratum.governance.guard.service import CompiledGuard, Findings
from stratum.governance.guard.stream import StreamMasker
from stratum.governance.guard.words import WordList

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = ROOT / "tests" / "governance" / "guard" / "guard_cases.jsonl"
_DIGITS = re.compile(r"\d+")


def _rate(work: Callable[[], object], chars: int, repeat: int) -> float:
    """Characters per second, best of ``repeat`` runs (the least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return chars / best if best > 0 else float("inf")


def _stream_all(document: str, piece: int) -> None:
    masker = StreamMasker(types=PII_TYPES)
    for i in range(0, len(document), piece):
        masker.feed(document[i : i + piece])
    masker.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs per row (best is reported).")
    args = parser.parse_args()
    cases = load_cases(args.cases)
    result = evaluate(cases)

    print(f"### Guard quality ({result.cases} labelled cases, exact type + span match)\n")
    print("| type | gold | found ok | spurious | missed | precision | recall | F1 |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for kind in (*PII_TYPES, INJECTION):
        t = result.tallies[kind]
        print(
            f"| {kind} | {t.tp + t.fn} | {t.tp} | {t.fp} | {t.fn} | "
            f"{t.precision:.3f} | {t.recall:.3f} | {t.f1:.3f} |"
        )
    overall = result.overall()
    print(
        f"| **all PII** | {overall.tp + overall.fn} | {overall.tp} | {overall.fp} | {overall.fn} | "
        f"{overall.precision:.3f} | {overall.recall:.3f} | {overall.f1:.3f} |"
    )
    if result.errors:
        print("\nErrors:")
        for text, what, item in result.errors:
            print(f"- {what} {item[0]} in {text!r}")

    texts = [c["text"] for c in cases]
    corpus_chars = sum(len(t) for t in texts)
    document = "\n".join(texts) * 4  # one long mixed document
    words = WordList([f"敏感词{i}" for i in range(1000)] + ["赌博", "vpn", "博彩"])
    rows: list[tuple[str, Callable[[], object], int]] = [
        ("baseline: one \\d+ regex pass (document)", lambda: _DIGITS.findall(document), len(document)),
        ("find_pii, all types (short texts)", lambda: [find_pii(t) for t in texts], corpus_chars),
        ("mask_pii, all types (document)", lambda: mask_pii(document), len(document)),
        ("stream masking, 4-char chunks (document)", lambda: _stream_all(document, 4), len(document)),
        ("stream masking, 32-char chunks (document)", lambda: _stream_all(document, 32), len(document)),
        ("sensitive words, 1,003-word automaton (document)", lambda: words.find(document), len(document)),
        ("injection score (short texts)", lambda: [injection_score(t) for t in texts], corpus_chars),
    ]
    print(f"\n### Guard throughput (best of {args.repeat}; shared machine, under contention)\n")
    print("| work | chars | chars/s | vs baseline |")
    print("|---|--:|--:|--:|")
    baseline = None
    for name, work, chars in rows:
        rate = _rate(work, chars, args.repeat)
        baseline = baseline or rate
        print(f"| {name} | {chars:,} | {rate:,.0f} | {rate / baseline:.3f}x |")
    per_prompt = _rate(lambda: [find_pii(t) for t in texts], len(texts), args.repeat)
    print(f"\nfind_pii on a typical short prompt: {1e6 / per_prompt:.1f} µs per text ({len(texts)} texts)")
    _per_request(args.repeat)


def _per_request(repeat: int) -> None:
    """What the guard adds to one chat request with the default policy and 1,000 sensitive words:
    the prompt check, and masking a streamed answer in 4-character chunks (about one token each)."""
    guard = CompiledGuard(GuardPolicy(), [f"敏感词{i}" for i in range(1000)])
    prompt = (
        "你好，我叫王芳，身份证号11010519491231002X，手机13912345678。请帮我查一下上个月的订单"
        "（订单号110105194912310021）为什么还没有发货，并用英文写一封给客服的邮件。Thanks! " * 2
    )
    answer = (
        "好的，王女士。我查到您的订单已于11月20日发出，快递单号SF1234567890123，预计两天内送达。"
        "如有问题请拨打客服电话400-820-8820，或发邮件至 support@example.com。Dear support team, "
        "I am writing about order 110105194912310021, which has not arrived yet. Best regards. " * 3
    )
    rounds = 200

    def prompts() -> None:
        for _ in range(rounds):
            guard.check_prompt(prompt, Findings())

    def answers() -> None:
        for _ in range(rounds):
            masker = guard.response_masker()
            for i in range(0, len(answer), 4):
                masker.feed(answer[i : i + 4])
            masker.finish()

    print(f"\n### Guard cost per chat request (default policy, 1,000 words; best of {repeat})\n")
    print("| step | chars | µs per request |")
    print("|---|--:|--:|")
    for name, work, chars in (
        ("prompt check (PII mask + injection + words)", prompts, len(prompt)),
        ("response masking, streamed in 4-char chunks", answers, len(answer)),
    ):
        per_second = _rate(work, rounds, repeat)
        print(f"| {name} | {chars} | {1e6 / per_second:.0f} |")


if __name__ == "__main__":
    main()
