"""The embedded engine: a local Hugging Face causal LM served by one scheduler thread.

How a request flows:
1. ``generate()`` (event-loop thread) renders the prompt, checks it fits the context and that the
   admission queue has room, then hands a ``_Sequence`` to the scheduler. Errors surface here,
   before any byte is streamed, so the gateway can still answer with a proper status code.
2. The scheduler thread admits waiting sequences between decode steps (up to ``max_batch``
   running), prefills each newcomer once, then advances every running sequence by one token per
   round. Each sequence keeps its own KV cache, so no step recomputes the prefix.
3. Text deltas travel back to the event loop through ``call_soon_threadsafe``; the async iterator
   the caller holds yields them. Closing that iterator (client gone) marks the sequence cancelled
   and the scheduler drops it at the next round, freeing its slot and cache.

The per-round step is sequence-by-sequence; fusing running sequences into one batched forward is
the serving-performance issue's job and does not change this interface.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stratum.engine.base import FinishReason, GenerationChunk, GenerationRequest, ModelInfo
from stratum.engine.prompting import PromptBuilder
from stratum.engine.sampling import StopScanner, make_generator, pick_token
from stratum.errors import EngineError, InvalidRequest, Overloaded

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Sequence:
    request: GenerationRequest
    prompt_ids: list[int]
    max_new_tokens: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]
    deadline: float | None
    generator: torch.Generator
    stops: StopScanner
    cancelled: bool = False
    cache: Any = None
    next_input: int | None = None
    generated: list[int] = field(default_factory=list)
    emitted: int = 0

    def push(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the client's event loop is gone
            self.cancelled = True


class _SequenceStream:
    """The caller's view of a sequence. Closing it, even before the first read, cancels the sequence."""

    def __init__(self, seq: _Sequence) -> None:
        self._seq = seq
        self._done = False

    def __aiter__(self) -> _SequenceStream:
        return self

    async def __anext__(self) -> GenerationChunk:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._seq.queue.get()
        except BaseException:  # cancelled while waiting: the client is gone
            await self.aclose()
            raise
        if isinstance(item, Exception):
            await self.aclose()
            raise item
        if item.finish_reason is not None:
            await self.aclose()
        return item

    async def aclose(self) -> None:
        self._done = True
        # The scheduler drops a cancelled sequence at its next round, freeing the slot and KV cache.
        self._seq.cancelled = True


class LocalEngine:
    """Serves one local model directory (safetensors + tokenizer + chat template) on the CPU."""

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        dtype: str = "float32",
    ) -> None:
        self.path = path
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.dtype = dtype
        self.info = ModelInfo()
        self._model: Any = None
        self._prompts: PromptBuilder | None = None
        self._eos_ids: set[int] = set()
        self._context_length = 2048
        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(target=self._run, name=f"engine:{self.path.name}", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.path)
            model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, self.dtype))
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot load model from {self.path}: {exc}") from exc
        model.eval()
        self._model = model
        self._prompts = PromptBuilder(tokenizer)
        config = model.config
        self._context_length = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        self._eos_ids = _eos_ids(model, tokenizer)
        self.info = ModelInfo(
            architecture=type(model).__name__,
            parameters=sum(p.numel() for p in model.parameters()),
            context_length=self._context_length,
            tokenizer=type(tokenizer).__name__,
            extra={"dtype": self.dtype},
        )

    async def close(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None
        self._model = None

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    # -- submission (event-loop thread) ------------------------------------------------------

    def count_prompt_tokens(self, request: GenerationRequest) -> int | None:
        return len(self._prompt_ids(request))

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        if self._prompts is None:
            raise EngineError("engine is not started")
        if request.messages is not None:
            return self._prompts.chat(request.messages)
        return self._prompts.text(request.prompt or "")

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        prompt_ids = self._prompt_ids(request)
        room = self._context_length - len(prompt_ids)
        if room <= 0:
            raise InvalidRequest(
                f"This model's maximum context length is {self._context_length} tokens; "
                f"the prompt has {len(prompt_ids)} tokens.",
                param="messages" if request.messages is not None else "prompt",
                code="context_length_exceeded",
            )
        wanted = request.params.max_tokens
        if wanted is not None and wanted > room:
            raise InvalidRequest(
                f"max_tokens is {wanted}, but the prompt has {len(prompt_ids)} tokens and this model's "
                f"maximum context length is {self._context_length} tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        with self._wake:
            # Sequences whose clients left while waiting must not hold queue places.
            if any(seq.cancelled for seq in self._waiting):
                self._waiting = deque(seq for seq in self._waiting if not seq.cancelled)
        if len(self._waiting) >= self.max_queue:
            raise Overloaded(f"the engine queue is full ({self.max_queue} waiting); retry shortly")
        seq = _Sequence(
            request=request,
            prompt_ids=prompt_ids,
            max_new_tokens=wanted or room,
            loop=asyncio.get_running_loop(),
            queue=asyncio.Queue(),
            deadline=time.monotonic() + request.deadline_s if request.deadline_s else None,
            generator=make_generator(request.params.seed),
            stops=StopScanner(request.params.stop),
        )
        with self._wake:
            self._waiting.append(seq)
            self._wake.notify()
        return _SequenceStream(seq)

    # -- scheduler thread --------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._stopping and not self._waiting and not self._running:
                        self._wake.wait()
                    if self._stopping:
                        break
                    # Newcomers join between rounds, up to the batch limit.
                    while self._waiting and len(self._running) < self.max_batch:
                        self._running.append(self._waiting.popleft())
                for seq in list(self._running):
                    if not self._advance(seq):
                        self._running.remove(seq)
        for seq in [*self._running, *self._waiting]:
            seq.push(EngineError("the engine was shut down"))
        self._running.clear()
        self._waiting.clear()

    def _advance(self, seq: _Sequence) -> bool:
        """Run one step of ``seq``. Returns False when the sequence has left the batch."""
        if seq.cancelled:
            return False
        if seq.deadline is not None and time.monotonic() > seq.deadline:
            seq.push(EngineError("generation exceeded the request timeout", code="timeout"))
            return False
        try:
            logits = self._forward(seq)
            token = pick_token(logits, seq.request.params, seq.generator)
        except Exception as exc:  # a model failure must end this request, not the engine
            log.exception("generation failed for %s", seq.request.request_id)
            seq.push(EngineError(f"generation failed: {exc}"))
            return False
        seq.generated.append(token)
        seq.next_input = token
        return self._emit(seq, token)

    def _forward(self, seq: _Sequence) -> torch.Tensor:
        from transformers import DynamicCache

        if seq.cache is None:
            # Prefill: the whole prompt once; later steps feed one token against the cache.
            ids = torch.tensor([seq.prompt_ids], dtype=torch.long)
            seq.cache = DynamicCache(config=self._model.config)
        else:
            ids = torch.tensor([[seq.next_input]], dtype=torch.long)
        out = self._model(input_ids=ids, past_key_values=seq.cache, use_cache=True)
        seq.cache = out.past_key_values
        return out.logits[0, -1]

    def _emit(self, seq: _Sequence, token: int) -> bool:
        assert self._prompts is not None
        is_eos = token in self._eos_ids
        text = self._prompts.decode([t for t in seq.generated if t not in self._eos_ids])
        finish: FinishReason | None = None
        stop_at = seq.stops.find(text, seq.emitted) if seq.stops.stops else None
        if stop_at is not None:
            text, finish = text[:stop_at], "stop"
        elif is_eos:
            finish = "stop"
        elif len(seq.generated) >= seq.max_new_tokens:
            finish = "length"
        end = len(text) if finish else seq.stops.safe_end(text)
        delta = text[seq.emitted : end]
        if finish is None and not delta:
            return True
        seq.emitted = end
        seq.push(
            GenerationChunk(
                text=delta,
                prompt_tokens=len(seq.prompt_ids),
                completion_tokens=len(seq.generated),
                finish_reason=finish,
            )
        )
        return finish is None


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids from the generation config and the tokenizer (chat models often have two)."""
    ids: set[int] = set()
    generation = getattr(model, "generation_config", None)
    configured = getattr(generation, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
