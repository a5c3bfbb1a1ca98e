"""Token selection and incremental detokenisation, shared by the embedded engine's sequences."""

from __future__ import annotations

import torch

from stratum.engine.base import SamplingParams


def make_generator(seed: int | None) -> torch.Generator:
    """A per-sequence RNG: same seed + same prompt gives the same tokens, whatever else runs."""
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def pick_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Choose the next token from one row of logits (shape: [vocab])."""
    if params.temperature <= 0.0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least the best token).
        drop = cumulative - sorted_probs > params.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, num_samples=1, generator=generator).item())


class StopScanner:
    """Finds stop strings in growing text and says how much text is safe to emit.

    Text that could be the start of a stop string is held back until it is known not to be one,
    so a client never sees part of a stop sequence.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._hold = max((len(s) for s in stops), default=1) - 1

    def find(self, text: str, start: int) -> int | None:
        """Index where the earliest stop string begins in ``text`` (searching from ``start``)."""
        hits = [i for s in self.stops if (i := text.find(s, max(0, start - len(s)))) != -1]
        return min(hits) if hits else None

    def safe_end(self, text: str) -> int:
        """How many characters of ``text`` can be emitted without risking a partial stop string."""
        end = len(text)
        # A replacement char at the end means a multi-byte character (e.g. Chinese) is incomplete.
        while end and text[end - 1] == "\ufffd":
            end -= 1
        if not self.stops:
            return end
        for cut in range(max(0, end - self._hold), end):
            tail = text[cut:end]
            if any(s.startswith(tail) for s in self.stops):
                return cut
        return end
